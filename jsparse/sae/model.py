"""Sparse autoencoder in Flax NNX: tied or untied, per-latent output scale, pre-bias.

    u      = (c x - b_pre) W_enc^T                   (B, M)   c = input scale (unit mean sq. norm)
    z      = u + b_enc                               encoder bias (gradient-trained methods)
    codes  = act(z)                                  (B, M)
    x_hat  = ((codes * a) W_dec + b_pre) / c         (B, d)   W_dec = W_enc when tied

Activations (`activation=`):
  "adaptive"  : GBA/BA gate. y = u + b with b an `AdaptiveBias` (no gradient, moved by the
                frequency rule of `gba.py`); codes = u * 1[y > 0] ("jump" gate, the notes'
                JumpReLU reading: threshold -b >= 0) or relu(y) ("relu" gate).
  "relu"      : relu(z).
  "jumprelu"  : z * H(z - theta), theta = exp(log_threshold), straight-through gradient for
                theta with a rectangle kernel of width `bandwidth` (custom_vjp).
  "topk"      : relu of the k largest z per sample, zero elsewhere.
  "batchtopk" : training keeps the k * B largest relu(z) of the whole batch (k is a per-sample
                average); inference uses a global threshold (EMA of the smallest kept value).

Parameters that gradients update are `nnx.Param`; the adaptive bias, the BatchTopK inference
threshold and the input scale are other `nnx.Variable` kinds, so `nnx.split(model, nnx.Param,
...)` keeps them out of the optimiser (optax issue #159 is avoided by construction).
"""
from __future__ import annotations

import functools
import math
from typing import TypeVar

import jax
import jax.numpy as jnp
from flax import nnx

from jsparse.core import validation as val
from jsparse.core.order import kth_largest

__all__ = ["SAE", "AdaptiveBias", "Buffer", "ACTIVATIONS", "jumprelu", "step_fn", "topk_mask", "kth_largest",
           "batch_kth", "present"]

T = TypeVar("T")


def present(var: T | None, what: str) -> T:
    """`var` where the architecture guarantees it exists (an optional variable or setting)."""
    assert var is not None, f"this SAE has no {what}"
    return var

ACTIVATIONS = ("adaptive", "relu", "jumprelu", "topk", "batchtopk")


class AdaptiveBias(nnx.Variable):
    """Per-latent bias set by bias adaptation, never by a gradient."""


class Buffer(nnx.Variable):
    """Non-trained state: input scale, BatchTopK inference threshold."""


def _rect(u):
    return (jnp.abs(u) < 0.5).astype(u.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def jumprelu(z, theta, bandwidth):
    """z * H(z - theta); d/dz = H(z - theta), d/dtheta = -(theta/eps) rect((z - theta)/eps)."""
    return z * (z > theta).astype(z.dtype)


def _jumprelu_fwd(z, theta, bandwidth):
    return jumprelu(z, theta, bandwidth), (z, theta)


def _jumprelu_bwd(bandwidth, res, g):
    z, theta = res
    dz = g * (z > theta).astype(z.dtype)
    dtheta = -(theta / bandwidth) * _rect((z - theta) / bandwidth) * g
    return dz, jnp.sum(dtheta.reshape(-1, theta.shape[-1]), axis=0).reshape(theta.shape)


jumprelu.defvjp(_jumprelu_fwd, _jumprelu_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def step_fn(z, theta, bandwidth):
    """H(z - theta) with d/dtheta = -(1/eps) rect((z - theta)/eps) and no gradient into z."""
    return (z > theta).astype(z.dtype)


def _step_fwd(z, theta, bandwidth):
    return step_fn(z, theta, bandwidth), (z, theta)


def _step_bwd(bandwidth, res, g):
    z, theta = res
    dtheta = -(1.0 / bandwidth) * _rect((z - theta) / bandwidth) * g
    return jnp.zeros_like(z), jnp.sum(dtheta.reshape(-1, theta.shape[-1]), axis=0).reshape(theta.shape)


step_fn.defvjp(_step_fwd, _step_bwd)


def batch_kth(r: jax.Array, n: int, cap: int) -> jax.Array:
    """The exact n-th largest entry of r (B, M) >= 0 (n <= B * cap), found among each row's `cap`
    largest: when every row's cap-th largest is below that candidate, no entry outside the candidates
    can reach it, so it is the n-th largest of r; otherwise (some row holds cap or more of the top n)
    the full count over r decides (`lax.cond`, no host sync). One top_k of width cap and a count over
    B * cap values instead of 32 (64 in float64) counting passes over all of r."""
    cap = min(cap, r.shape[1])
    top, _ = jax.lax.top_k(r, cap)
    t = kth_largest(top, n)
    # the row minimum of `top`, not top[:, -1]: slicing the sorted output made XLA (CPU) lower top_k
    # as a full sort of r (10x slower at 4096 x 6144)
    return jax.lax.cond(jnp.any(jnp.min(top, axis=1) >= t), lambda: kth_largest(r, n), lambda: t)


def topk_mask(z: jax.Array, k: int) -> jax.Array:
    """Boolean (B, M) mask of the k largest entries of each row (exactly k per row)."""
    _, idx = jax.lax.top_k(z, k)
    rows = jnp.arange(z.shape[0])[:, None]
    return jnp.zeros(z.shape, bool).at[rows, idx].set(True)


class SAE(nnx.Module):
    """Sparse autoencoder; see the module docstring for the forward pass.

    Args:
      d: input dimension. width: number of latents M.
      activation: one of ACTIVATIONS. k: active latents per sample (topk / batchtopk).
      tied: decoder rows are the encoder rows. output_scale: learn a per-latent scale a
        (initialised to 1); otherwise a = 1. pre_bias: learn b_pre (init: zeros; the trainer
        sets it to the data mean). gate: "jump" or "relu" (adaptive only).
      jump_threshold / bandwidth: JumpReLU initial threshold and STE bandwidth.
      rngs: nnx.Rngs. dtype: parameter dtype.
    Init: decoder rows unit-norm Gaussian directions; untied encoder = decoder (W_enc = W_dec^T
    in the usual column layout); biases zero.
    """

    def __init__(
        self,
        d: int,
        width: int,
        *,
        activation: str = "adaptive",
        k: int | None = None,
        tied: bool = True,
        output_scale: bool = True,
        pre_bias: bool = True,
        gate: str = "jump",
        jump_threshold: float = 0.05,
        bandwidth: float = 0.05,
        scale_init: float = 1.0,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        val.check_int(d, "d", minimum=1)
        val.check_int(width, "width", minimum=1)
        val.check_choice(activation, "activation", ACTIVATIONS)
        val.check_choice(gate, "gate", ("jump", "relu"))
        if activation in ("topk", "batchtopk"):
            val.check_int(k, "k", minimum=1, maximum=width)
        val.check_positive(bandwidth, "bandwidth")
        val.check_positive(jump_threshold, "jump_threshold")
        if not (isinstance(scale_init, (int, float)) and math.isfinite(scale_init)):
            raise ValueError(f"scale_init: expected a finite number, got {scale_init!r}")
        self.d, self.width, self.activation, self.k = d, width, activation, k
        self.tied, self.gate, self.bandwidth = tied, gate, float(bandwidth)
        w = jax.random.normal(rngs.params(), (width, d), dtype)
        w = w / jnp.linalg.norm(w, axis=1, keepdims=True)
        self.w_enc = nnx.Param(w)
        self.w_dec = None if tied else nnx.Param(jnp.array(w))  # a copy: no shared buffer
        self.scale = nnx.Param(jnp.full((width,), scale_init, dtype)) if output_scale else None
        self.b_pre = nnx.Param(jnp.zeros((d,), dtype)) if pre_bias else None
        self.input_scale = Buffer(jnp.ones((), dtype))
        self.b_enc = None if activation == "adaptive" else nnx.Param(jnp.zeros((width,), dtype))
        self.bias = AdaptiveBias(jnp.zeros((width,), dtype)) if activation == "adaptive" else None
        self.log_threshold = (
            nnx.Param(jnp.full((width,), jnp.log(jump_threshold), dtype)) if activation == "jumprelu" else None
        )
        self.threshold = Buffer(jnp.zeros((), dtype)) if activation == "batchtopk" else None

    # -- pieces ---------------------------------------------------------------------------
    def decoder_weight(self) -> jax.Array:
        """Effective decoder rows (M, d): a_m * w_dec_m (what x_hat is built from)."""
        w = self.w_enc[...] if self.tied else present(self.w_dec, "w_dec")[...]
        return w if self.scale is None else self.scale[...][:, None] * w

    def projections(self, x: jax.Array) -> jax.Array:
        """u = (c x - b_pre) W_enc^T, (B, M)."""
        xc = x * self.input_scale[...]
        if self.b_pre is not None:
            xc = xc - self.b_pre[...][None, :]
        return xc @ self.w_enc[...].T

    def pre_activations(self, x: jax.Array | None = None, *, u: jax.Array | None = None) -> jax.Array:
        """The quantity whose sign says "fires": y = u + b (adaptive) or z = u + b_enc.
        Pass precomputed projections `u` instead of `x` to skip the matmul."""
        u = self.projections(present(x, "input x (or projections u)")) if u is None else u
        b = jax.lax.stop_gradient(self.bias[...]) if self.bias is not None else present(self.b_enc, "b_enc")[...]
        return u + b[None, :]

    def encode(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Codes (B, M) >= 0. `train` only matters for batchtopk (batch top-k vs threshold)."""
        return self.activate(self.projections(x), train=train)

    def activate(self, u: jax.Array, *, train: bool = False) -> jax.Array:
        """Codes from projections u (B, M)."""
        a = self.activation
        z = self.pre_activations(u=u)
        if a == "adaptive":
            return u * (z > 0).astype(u.dtype) if self.gate == "jump" else jax.nn.relu(z)
        if a == "relu":
            return jax.nn.relu(z)
        if a == "jumprelu":
            return jumprelu(z, jnp.exp(present(self.log_threshold, "log_threshold")[...])[None, :], self.bandwidth)
        if a == "topk":
            return jnp.where(topk_mask(z, present(self.k, "k")), jax.nn.relu(z), 0)
        # batchtopk
        r = jax.nn.relu(z)
        if train:
            k = present(self.k, "k")
            kth = batch_kth(jax.lax.stop_gradient(r), k * z.shape[0], 4 * k)
            return jnp.where((r >= kth) & (r > 0), r, 0)
        return jnp.where(r > present(self.threshold, "threshold")[...], r, 0)

    def decode(self, codes: jax.Array) -> jax.Array:
        out = codes @ self.decoder_weight()
        if self.b_pre is not None:
            out = out + self.b_pre[...][None, :]
        return out / self.input_scale[...]

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return self.decode(self.encode(x, train=train))

    def normalize_rows(self) -> None:
        """Project decoder rows (the tied rows when tied) back to unit norm."""
        target = self.w_enc if self.tied else present(self.w_dec, "w_dec")
        w = target[...]
        target[...] = w / jnp.maximum(jnp.linalg.norm(w, axis=1, keepdims=True), 1e-12)
