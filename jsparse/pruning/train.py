"""Jitted masked training and evaluation of a Flax NNX classifier.

`Trainer(model, ...)` splits the model once (graph, Param, BatchStat, rest) and builds pure
jitted functions over those states:
* `train_epoch(state, x, y, key) -> (state, mean_loss)` — one shuffled epoch as a `lax.scan` over
  fixed-size batches (the remainder is dropped), data passed as arguments;
* `evaluate(params, batch_stats, x, y) -> (accuracy, mean_loss)` — padded fixed-size batches;
* `fit(state, x, y, key, epochs=E, checkpoint_dir=...)` — E epochs (epoch e shuffled with
  `fold_in(key, key_offset + e)`), the state saved after every epoch; a re-run after a crash
  resumes from the last saved epoch and ends bit-identical to an uninterrupted run.
The optimizer follows the paper: clip by global norm (of the unmasked gradient) 1.0, then the
masked wrapper around weight decay 5e-4 + SGD Nesterov (lr 0.1, momentum 0.9) with a cosine
schedule over one round; every value is settable.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jsparse.core import distributed, records
from jsparse.core import validation as val
from jsparse.core.progress import progress
from jsparse.pruning.masked import masked, set_masks

__all__ = ["TrainState", "Trainer", "make_optimizer", "augment_flip_crop", "CHECKPOINT_FILE"]

CHECKPOINT_FILE = "train_state.npz"


class TrainState(NamedTuple):
    params: Any
    batch_stats: Any
    opt_state: Any


def make_optimizer(steps: int, *, lr: float = 0.1, momentum: float = 0.9, nesterov: bool = True,
                   weight_decay: float = 5e-4, clip: float | None = 1.0, schedule: str = "cosine"):
    """chain(clip_by_global_norm, masked(chain(add_decayed_weights, sgd(schedule)))).

    `steps` = optimizer steps in one round (the cosine decays from lr to 0 over them).
    """
    if schedule == "cosine":
        sched = optax.cosine_decay_schedule(lr, max(int(steps), 1))
    elif schedule == "constant":
        sched = lr
    else:
        raise ValueError(f"schedule: expected 'cosine' or 'constant', got {schedule!r}")
    inner = optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(sched, momentum=momentum, nesterov=nesterov))
    parts = ([optax.clip_by_global_norm(clip)] if clip else []) + [masked(inner)]
    return optax.chain(*parts)


def augment_flip_crop(key: jax.Array, x: jax.Array, pad: int = 4) -> jax.Array:
    """Random horizontal flip + random crop with reflect padding (CIFAR / TinyImageNet); x (B,H,W,C)."""
    b, h, w, _ = x.shape
    kf, kh, kw = jax.random.split(key, 3)
    flip = jax.random.bernoulli(kf, 0.5, (b,))
    x = jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    oh = jax.random.randint(kh, (b,), 0, 2 * pad + 1)
    ow = jax.random.randint(kw, (b,), 0, 2 * pad + 1)
    crop = lambda img, i, j: jax.lax.dynamic_slice(img, (i, j, 0), (h, w, img.shape[-1]))
    return jax.vmap(crop)(xp, oh, ow)


def _xent(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


class Trainer:
    """Pure jitted training/evaluation for one model architecture and optimizer.

    Build it once and reuse it for every round and method: the jitted functions compile once.
    """

    def __init__(self, model: nnx.Module, *, steps_per_round: int, batch_size: int = 250,
                 eval_batch_size: int = 250, augment: bool = False, mesh=None,
                 optimizer: optax.GradientTransformation | None = None, **opt_kwargs):
        """Args: mesh — optional `jax.sharding.Mesh` with a "data" axis: every training batch is
        split over it and the state replicated (XLA all-reduces the gradients and batch-norm
        statistics, so a step equals the single-device step on the same global batch).
        optimizer — an optax transformation used as is (default: `make_optimizer(steps_per_round,
        **opt_kwargs)`, the masked SGD of the paper)."""
        self.graphdef, params, batch_stats, self.rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
        self.init_params, self.init_batch_stats = params, batch_stats
        self.tx = make_optimizer(steps_per_round, **opt_kwargs) if optimizer is None else optimizer
        self.batch_size, self.eval_batch_size, self.augment = batch_size, eval_batch_size, augment
        self.mesh = None
        if mesh is not None:
            self.mesh = distributed.data_mesh(mesh=mesh)
            n_dev = self.mesh.shape[distributed.DATA_AXIS]
            if batch_size % n_dev:
                raise ValueError(
                    f"batch_size: {batch_size} is not divisible by the {n_dev} devices of mesh axis 'data'"
                )
        self.train_epoch = jax.jit(self._train_epoch)
        self.evaluate = jax.jit(self._evaluate)

    def init_state(self, params: Any, batch_stats: Any, masks: Any) -> TrainState:
        """Fresh optimizer (zero momentum, schedule at step 0) holding `masks`."""
        state = TrainState(params, batch_stats, set_masks(self.tx.init(params), masks))
        return state if self.mesh is None else distributed.replicate(state, self.mesh)

    def _forward(self, params, batch_stats, x, train):
        model = nnx.merge(self.graphdef, params, batch_stats, self.rest, copy=True)
        logits = model(x, train=train)
        return logits, nnx.state(model, nnx.BatchStat)

    def _train_epoch(self, state: TrainState, x: jax.Array, y: jax.Array, key: jax.Array):
        n_steps = x.shape[0] // self.batch_size
        kperm, kaug = jax.random.split(key)
        idx = jax.random.permutation(kperm, x.shape[0])[: n_steps * self.batch_size].reshape(n_steps, self.batch_size)

        def loss_fn(params, batch_stats, xb, yb):
            logits, new_bs = self._forward(params, batch_stats, xb, True)
            return jnp.mean(_xent(logits, yb)), new_bs

        def step(st, inp):
            i, k = inp
            xb, yb = x[i], y[i]
            if self.mesh is not None:  # split the batch over the data axis
                batch_sharding = NamedSharding(self.mesh, P(distributed.DATA_AXIS))
                xb = jax.lax.with_sharding_constraint(xb, batch_sharding)
                yb = jax.lax.with_sharding_constraint(yb, batch_sharding)
            if self.augment:
                xb = augment_flip_crop(k, xb)
            (loss, new_bs), grads = jax.value_and_grad(loss_fn, has_aux=True)(st.params, st.batch_stats, xb, yb)
            # optax's schedules mix int step counts with floats: standard promotion for its code only.
            with jax.numpy_dtype_promotion("standard"):
                updates, opt_state = self.tx.update(grads, st.opt_state, st.params)
            return TrainState(optax.apply_updates(st.params, updates), new_bs, opt_state), loss

        keys = jax.random.split(kaug, n_steps)
        state, losses = jax.lax.scan(step, state, (idx, keys))
        return state, jnp.mean(losses)

    def _evaluate(self, params, batch_stats, x, y):
        n, b = x.shape[0], self.eval_batch_size
        n_batches = -(-n // b)
        pad = n_batches * b - n
        xp = jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1)).reshape((n_batches, b) + x.shape[1:])
        yp = jnp.pad(y, (0, pad)).reshape(n_batches, b)
        valid = (jnp.arange(n_batches * b) < n).reshape(n_batches, b)

        def body(carry, inp):
            xb, yb, vb = inp
            logits, _ = self._forward(params, batch_stats, xb, False)
            hits = jnp.argmax(logits, -1).astype(yb.dtype) == yb  # argmax is int64 under x64
            correct = jnp.sum(jnp.where(vb, hits, False), dtype=jnp.int32)
            loss = jnp.sum(jnp.where(vb, _xent(logits, yb), 0.0), dtype=jnp.float32)
            return (carry[0] + correct, carry[1] + loss), None

        # fixed carry dtypes (int32, float32) so the scan also traces under JAX_ENABLE_X64
        (correct, loss), _ = jax.lax.scan(body, (jnp.int32(0), jnp.float32(0.0)), (xp, yp, valid))
        return correct / n, loss / n

    def fit(self, state: TrainState, x: jax.Array, y: jax.Array, key: jax.Array, *, epochs: int, key_offset: int = 0,
            checkpoint_dir: str | Path | None = None, resume: bool = True,
            desc: str = "train") -> tuple[TrainState, jax.Array]:
        """`epochs` epochs of `train_epoch` from `state` (epoch e uses `fold_in(key, key_offset + e)`);
        returns (state, mean loss of the last epoch). checkpoint_dir: after every epoch the state is
        saved there (`CHECKPOINT_FILE`, atomic, every leaf with its dtype); with `resume` a re-run
        continues after the last saved epoch. A checkpoint of other settings or another start state
        raises ValueError naming checkpoint_dir; a damaged one jsparse.CorruptFileError. desc: the
        progress bar's label."""
        epochs = val.check_int(epochs, "epochs", minimum=1)
        key = val.as_key(key, "key")
        path = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_FILE
        tag = np.zeros((32,), np.uint8) if path is None else self._fit_tag(state, x, y, key, epochs, key_offset)
        start, loss = 0, jnp.zeros((), jnp.float32)
        if path is not None and resume and path.exists():
            state, start, loss = self._load_fit(path, state, tag)
        for e in progress(range(start, epochs), total=epochs, initial=start, desc=desc):
            state, loss = self.train_epoch(state, x, y, jax.random.fold_in(key, key_offset + e))
            if path is not None:
                records.save_pytree(path, (state, jnp.asarray(e + 1, jnp.int32), jnp.asarray(loss, jnp.float32), tag))
        return state, loss

    def _fit_tag(self, state, x, y, key, epochs: int, key_offset: int) -> np.ndarray:
        """(32,) uint8 SHA-256 of a fit's settings and start state: a checkpoint resumes only its own run."""
        h = hashlib.sha256(json.dumps(dict(epochs=epochs, key_offset=key_offset, batch=self.batch_size,
                                           augment=self.augment, x=[list(x.shape), str(x.dtype)],
                                           y=[list(y.shape), str(y.dtype)])).encode())
        for leaf in [key, *jax.tree_util.tree_leaves(state)]:
            leaf = jax.random.key_data(leaf) if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key) else leaf
            h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
        return np.frombuffer(h.digest(), np.uint8).copy()

    def _load_fit(self, path: Path, state: TrainState, tag: np.ndarray):
        template = (state, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32), tag)
        saved, epoch, loss, saved_tag = records.load_pytree(path, template)
        if not np.array_equal(np.asarray(saved_tag), tag):
            raise ValueError(f"checkpoint_dir: {path.parent} holds another run (other settings, data shapes, key or "
                             "start state); use another folder or resume=False")
        if self.mesh is not None:
            saved = distributed.replicate(saved, self.mesh)
        return saved, int(epoch), loss
