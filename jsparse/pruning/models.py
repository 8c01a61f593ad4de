"""Flax NNX models of the paper (reference `src/models/*.py`), NHWC images.

Linear, MLP (hidden 128 -> 256), CNN (4 x [Conv3x3 + BN + ReLU + MaxPool2], widths 64..512, no
pool after the last block, global average pool, Linear), pre-activation ResNet18, the wide
pre-activation WideResNet28x8, and a v1.5 bottleneck ResNet50.  Every `__call__(x, train=False)`
takes x of shape (batch, H, W, C) (Linear/MLP flatten it) and returns logits (batch, classes).

Initialisation as the reference: conv kernels Kaiming normal, fan_out, ReLU gain; linear kernels
U(-1/sqrt(fan_in), 1/sqrt(fan_in)); biases 0; BatchNorm(momentum=0.9, epsilon=1e-5) = PyTorch's
defaults.  Kernels are (in, out) / (kh, kw, in, out): the output "neuron" is the last axis.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import linen, nnx

__all__ = ["Linear", "MLP", "CNN", "ResNet18", "WideResNet28x8", "ResNet50", "build", "MODELS"]

_conv_init = jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_dense_init = jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def conv(cin, cout, k, rngs, stride=1, bias=False):
    return nnx.Conv(cin, cout, (k, k), strides=stride, padding="SAME", use_bias=bias, kernel_init=_conv_init, rngs=rngs)


def dense(cin, cout, rngs):
    return nnx.Linear(cin, cout, kernel_init=_dense_init, rngs=rngs)


def bn(c, rngs):
    return nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, rngs=rngs)


def _flat(x):
    return x.reshape(x.shape[0], -1)


def _gap(x):
    return jnp.mean(x, axis=(1, 2))


class Linear(nnx.Module):
    def __init__(self, in_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs):
        self.fc = dense(math.prod(in_shape), num_classes, rngs)

    def __call__(self, x, train: bool = False):
        return self.fc(_flat(x))


class MLP(nnx.Module):
    def __init__(self, in_shape: Sequence[int], num_classes: int, *, hidden: Sequence[int] = (128, 256),
                 rngs: nnx.Rngs):
        sizes = [math.prod(in_shape)] + list(hidden)
        self.hidden = nnx.List([dense(a, b, rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.out = dense(sizes[-1], num_classes, rngs)

    def __call__(self, x, train: bool = False):
        x = _flat(x)
        for layer in self.hidden:
            x = jax.nn.relu(layer(x))
        return self.out(x)


class CNN(nnx.Module):
    def __init__(self, in_shape: Sequence[int], num_classes: int, *, widths: Sequence[int] = (64, 128, 256, 512),
                 rngs: nnx.Rngs):
        chans = [in_shape[-1]] + list(widths)
        self.convs = nnx.List([conv(a, b, 3, rngs, bias=True) for a, b in zip(chans[:-1], chans[1:])])
        self.norms = nnx.List([bn(b, rngs) for b in widths])
        self.fc = dense(widths[-1], num_classes, rngs)

    def __call__(self, x, train: bool = False):
        n = len(self.convs)
        for i, (c, b) in enumerate(zip(self.convs, self.norms)):
            x = jax.nn.relu(b(c(x), use_running_average=not train))
            if i < n - 1:
                x = linen.max_pool(x, (2, 2), strides=(2, 2))
        return self.fc(_gap(x))


class PreActBlock(nnx.Module):
    """BN-ReLU-conv3x3, BN-ReLU-conv3x3; 1x1 conv shortcut on the pre-activated input if needed."""

    def __init__(self, cin, cout, stride, rngs, dropout=0.0):
        self.bn1, self.conv1 = bn(cin, rngs), conv(cin, cout, 3, rngs, stride)
        self.bn2, self.conv2 = bn(cout, rngs), conv(cout, cout, 3, rngs)
        self.shortcut = conv(cin, cout, 1, rngs, stride) if (stride != 1 or cin != cout) else None

    def __call__(self, x, train):
        out = jax.nn.relu(self.bn1(x, use_running_average=not train))
        short = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(jax.nn.relu(self.bn2(out, use_running_average=not train)))
        return out + short


class _PreActResNet(nnx.Module):
    def __init__(self, in_shape, num_classes, stem, widths, blocks, strides, rngs):
        self.stem = conv(in_shape[-1], stem, 3, rngs)
        layers, cin = [], stem
        for w, n, s in zip(widths, blocks, strides):
            for i in range(n):
                layers.append(PreActBlock(cin, w, s if i == 0 else 1, rngs))
                cin = w
        self.blocks = nnx.List(layers)
        self.bn = bn(cin, rngs)
        self.fc = dense(cin, num_classes, rngs)

    def __call__(self, x, train: bool = False):
        x = self.stem(x)
        for blk in self.blocks:
            x = blk(x, train)
        return self.fc(_gap(jax.nn.relu(self.bn(x, use_running_average=not train))))


class ResNet18(_PreActResNet):
    """Pre-activation ResNet18: stem conv3x3 64, stages [2,2,2,2], widths 64..512."""

    def __init__(self, in_shape, num_classes, *, rngs: nnx.Rngs, widths=(64, 128, 256, 512)):
        super().__init__(in_shape, num_classes, widths[0], widths, (2, 2, 2, 2), (1, 2, 2, 2), rngs)


class WideResNet28x8(_PreActResNet):
    """Pre-activation WRN-28-8 (32x32 inputs): stem 16, groups of 4 blocks, widths 128/256/512."""

    def __init__(self, in_shape, num_classes, *, rngs: nnx.Rngs, depth: int = 28, widen: int = 8):
        n = (depth - 4) // 6
        super().__init__(in_shape, num_classes, 16, (16 * widen, 32 * widen, 64 * widen), (n, n, n), (1, 2, 2), rngs)


class Bottleneck(nnx.Module):
    """ResNet v1.5 bottleneck: 1x1, 3x3 (stride here), 1x1 x4; post-activation."""

    def __init__(self, cin, width, stride, rngs):
        cout = 4 * width
        self.c1, self.b1 = conv(cin, width, 1, rngs), bn(width, rngs)
        self.c2, self.b2 = conv(width, width, 3, rngs, stride), bn(width, rngs)
        self.c3, self.b3 = conv(width, cout, 1, rngs), bn(cout, rngs)
        self.down = conv(cin, cout, 1, rngs, stride) if (stride != 1 or cin != cout) else None
        self.down_bn = bn(cout, rngs) if self.down is not None else None

    def __call__(self, x, train):
        ura = not train
        out = jax.nn.relu(self.b1(self.c1(x), use_running_average=ura))
        out = jax.nn.relu(self.b2(self.c2(out), use_running_average=ura))
        out = self.b3(self.c3(out), use_running_average=ura)
        if self.down is None or self.down_bn is None:  # both are set together
            short = x
        else:
            short = self.down_bn(self.down(x), use_running_average=ura)
        return jax.nn.relu(out + short)


class ResNet50(nnx.Module):
    """torchvision-style ResNet50 v1.5: 7x7/2 stem + 3x3/2 max pool, stages [3,4,6,3]."""

    def __init__(self, in_shape, num_classes, *, rngs: nnx.Rngs):
        self.stem, self.stem_bn = conv(in_shape[-1], 64, 7, rngs, 2), bn(64, rngs)
        layers, cin = [], 64
        for w, n, s in zip((64, 128, 256, 512), (3, 4, 6, 3), (1, 2, 2, 2)):
            for i in range(n):
                layers.append(Bottleneck(cin, w, s if i == 0 else 1, rngs))
                cin = 4 * w
        self.blocks = nnx.List(layers)
        self.fc = dense(cin, num_classes, rngs)

    def __call__(self, x, train: bool = False):
        x = jax.nn.relu(self.stem_bn(self.stem(x), use_running_average=not train))
        x = linen.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for blk in self.blocks:
            x = blk(x, train)
        return self.fc(_gap(x))


MODELS = {"linear": Linear, "mlp": MLP, "cnn": CNN, "resnet18": ResNet18, "wresnet28x8": WideResNet28x8,
          "resnet50": ResNet50}


def build(name: str, in_shape: Sequence[int], num_classes: int, *, seed: int = 0, **kwargs) -> nnx.Module:
    """Construct a model by name (keys of MODELS) with `nnx.Rngs(seed)`."""
    if name not in MODELS:
        raise ValueError(f"name: expected one of {tuple(MODELS)}, got {name!r}")
    return MODELS[name](tuple(in_shape), num_classes, rngs=nnx.Rngs(seed), **kwargs)
