"""`train(batches, method=..., width, steps, key)`: one jitted step per batch, every method.

A method is a value from `methods` (`GBA`, `BA`, `TopK`, `BatchTopK`, `ReLUL1`, `JumpReLU`) or its
name in METHODS with the value's fields as keyword arguments (`method="topk", k=16` is
`method=TopK(k=16)`). The method supplies the model's defaults, its loss term and its post-step
update; the step here is the same for all:

Reconstruction loss = 1/2 mean_b ||x_hat - x||^2 in normalised units: inputs are scaled by one
constant c (unit mean squared norm, from the first batch, the Gemma Scope / dictionary_learning
convention) so that GBA's bias range [-1, 0] spans the data (paper notes section 4.4). The
pre-bias starts at the first batch's mean (sparsify). Decoder rows are re-normalised to unit
norm after every step (all methods; the output scale a carries the magnitude in GBA/BA).

Data pipeline: a background thread fetches and validates batch i + 1 (shape, NaN) while the
jitted step of batch i runs. Checkpoints (`checkpoint.Checkpoint`) hold the whole train state and
the history so far; a re-run resumes from the last one and ends bit-identical to an uninterrupted
run (batch i must depend only on i: pass a `SyntheticStream`, a callable i -> batch, or a
re-iterable that is skipped ahead).
"""
from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jsparse.core import distributed
from jsparse.core import validation as val
from jsparse.core.progress import progress

from . import checkpoint as ckpt_io
from . import gba, losses
from .checkpoint import Checkpoint
from .gba import quantile_bias
from .methods import METHODS, Method, as_method
from .model import SAE
from .pipeline import Prefetcher, batch_iter, check_batch, is_indexed

__all__ = ["train", "fit", "TrainState", "METHODS", "Checkpoint", "build", "make_step", "init_state",
           "quantile_bias", "HISTORY_KEYS"]

HISTORY_KEYS = ("step", "loss", "mse", "fvu", "l0", "dead")


class TrainState(NamedTuple):
    """params: optimised nnx.State; rest: other model variables (adaptive bias, thresholds,
    input scale); opt_state; stats: GBA window accumulators; targets (M,): GBA targets;
    last_fired (M,) int32: last step each latent fired; step () int32; finite () bool."""

    params: Any
    rest: Any
    opt_state: Any
    stats: gba.WindowStats
    targets: jax.Array
    last_fired: jax.Array
    step: jax.Array
    finite: jax.Array


def build(method: str | Method, d: int, width: int, key: jax.Array, *, dtype=jnp.float32, **options) -> SAE:
    """The SAE a method trains (`method` and `options` as in `methods.as_method`; key: a PRNG key
    or an int seed)."""
    options = as_method(method, **options).model_options()
    return SAE(d, width, rngs=nnx.Rngs(params=val.as_key(key, "key")), dtype=dtype, **options)


def _loss(graphdef, part, params, rest, x, dead, formulation: str = "plain"):
    """Reconstruction loss (+ the method's penalty) and the step's by-products (`losses.loss`)."""
    return losses.loss(graphdef, part, params, rest, x, dead, formulation)


def _freeze_scale(grads, step, scale_warmup: int, dtype):
    """Zero gradients for the output scale a before step `scale_warmup` (Adam: zero update)."""
    if scale_warmup <= 0 or "scale" not in grads:
        return grads
    on = (step >= scale_warmup).astype(dtype)
    return nnx.State({k: (jax.tree_util.tree_map(lambda g: g * on, v) if k == "scale" else v)
                      for k, v in grads.items()})


def make_step(graphdef, part, optimizer: optax.GradientTransformation, *, dead_steps: int = 200,
              scale_warmup: int = 0, formulation: str = "auto"):
    """The jitted train step (state, x (B, d)) -> (state, metrics dict of scalars); `part` is a
    method's `step_part()` (its loss term and post-step update). formulation: "plain", "fast" or
    "auto" (by the batch's shape, fixed when the step is traced: `losses.resolve_formulation`).
    The state is donated: its buffers are reused for the new state."""
    val.check_choice(formulation, "formulation", losses.FORMULATIONS)

    def step(state: TrainState, x: jax.Array):
        dead = (state.step - state.last_fired) > dead_steps
        m0 = nnx.merge(graphdef, state.params, state.rest)
        form = losses.resolve_formulation(formulation, x.shape[0], m0.width, m0.d)
        grad_fn = jax.value_and_grad(functools.partial(_loss, graphdef, part, formulation=form), has_aux=True)
        (loss, aux), grads = grad_fn(state.params, state.rest, x, dead)
        grads = _freeze_scale(grads, state.step, scale_warmup, x.dtype)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes its int step count with floats
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        m = nnx.merge(graphdef, optax.apply_updates(state.params, updates), state.rest)
        m.normalize_rows()
        stats = part.post_step(m, state.stats, state.targets, state.step, aux["codes"], aux["z"])
        _, params, rest = nnx.split(m, nnx.Param, ...)
        fired = aux["fired"]
        new = TrainState(params=params, rest=rest, opt_state=opt_state, stats=stats, targets=state.targets,
                         last_fired=jnp.where(fired, state.step + 1, state.last_fired), step=state.step + 1,
                         finite=state.finite & jnp.isfinite(loss))
        metrics = dict(step=state.step + 1, loss=loss, mse=aux["mse"], fvu=aux["fvu"],
                       l0=aux["l0"],
                       dead=jnp.mean(dead.astype(loss.dtype)))
        return new, metrics

    return jax.jit(step, donate_argnums=0)


@functools.lru_cache(maxsize=32)
def _cached_step(graphdef, part, lr: float, dead_steps: int, scale_warmup: int):
    """make_step with Adam(lr), memoised: the same settings reuse one compiled step (GBA's
    targets live in the state and its step part holds none, so a sweep over them compiles once)."""
    return make_step(graphdef, part, optax.adam(lr), dead_steps=dead_steps, scale_warmup=scale_warmup)


def init_state(model: SAE, optimizer, method: Method, x0: jax.Array, normalize: bool) -> TrainState:
    """Set the input scale and pre-bias from the first batch x0 and whatever the method starts
    from it (GBA/BA's quantile bias start), then the fresh TrainState."""
    dtype = model.w_enc[...].dtype
    x0 = jnp.asarray(x0, dtype)
    if normalize:
        model.input_scale[...] = (1.0 / jnp.sqrt(jnp.mean(jnp.sum(x0**2, axis=1)))).astype(dtype)
    if model.b_pre is not None:
        model.b_pre[...] = jnp.mean(x0, axis=0) * model.input_scale[...]
    width = model.width
    targets = method.target_vector(width, dtype)
    targets = jnp.ones((width,), dtype) if targets is None else jnp.array(targets).astype(dtype)
    method.start(model, x0, targets)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    return TrainState(params=params, rest=rest, opt_state=optimizer.init(params), stats=gba.init_stats(width, dtype),
                      targets=targets, last_fired=jnp.zeros((width,), jnp.int32), step=jnp.zeros((), jnp.int32),
                      finite=jnp.ones((), bool))


class History:
    """The logged metrics: row j holds step (j + 1) * log_every; device scalars are read back
    only when the history is flushed (checkpoints, the end), never inside the loop."""

    def __init__(self, steps: int, log_every: int):
        self.log_every, self.num = log_every, steps // log_every
        self.hist = {name: np.full((self.num,), np.nan) for name in HISTORY_KEYS}
        self.pending: list[tuple[int, dict]] = []

    def record(self, i: int, metrics: dict) -> None:
        j = (i + 1) // self.log_every - 1
        if (i + 1) % self.log_every == 0 and j < self.num:
            self.pending.append((j, metrics))

    def flush(self) -> dict[str, np.ndarray]:
        for j, m in self.pending:
            for name, v in m.items():
                self.hist[name][j] = float(v)
        self.pending.clear()
        return self.hist

    def restore(self, hist: dict) -> None:
        """Continue from a checkpoint's history (writable float64 copies, as a fresh history)."""
        self.hist = {k: np.array(v, dtype=np.float64) for k, v in hist.items()}

    def result(self, finite) -> dict[str, np.ndarray]:
        out = {k: (v.astype(np.int64) if k == "step" else v) for k, v in self.flush().items()}
        out["finite"] = np.asarray(bool(finite))
        return out


def _first_batch(batches, dtype):
    """(batch 0 validated, its feature dimension d, its row count, the source to train from).

    A one-shot iterator (a generator) gives its first batch to this peek, so the source returned
    puts it back in front: no batch is lost."""
    if not is_indexed(batches):
        try:
            one_shot = iter(batches) is batches
        except TypeError:
            raise ValueError("batches: expected an object with batch(i), a callable i -> (B, d) array or an "
                             f"iterable of (B, d) arrays, got {type(batches).__name__}") from None
    else:
        one_shot = False
    raw = next(batch_iter(batches, 0, 1))[1]
    if one_shot:
        batches = itertools.chain([raw], batches)
    x0 = jnp.asarray(raw)
    if x0.ndim != 2:
        raise ValueError(f"batches: expected (batch, d) arrays, got shape {tuple(x0.shape)}")
    d, batch_size = int(x0.shape[1]), int(x0.shape[0])
    return check_batch(x0, 0, d, batch_size, dtype), d, batch_size, batches


def _distribute(state: TrainState, mesh, shard_latents: bool, batch_size: int, width: int):
    """The state placed on `mesh` (replicated, or latents split over "model") and the function that
    places each batch (split over "data"); no mesh: both unchanged."""
    if shard_latents and (mesh is None or distributed.MODEL_AXIS not in mesh.axis_names):
        raise ValueError("mesh: shard_latents=True needs a mesh with axes 'data' and 'model'")
    if mesh is None:
        return state, lambda b: b
    mesh = distributed.data_mesh(mesh=mesh)
    n_dev = mesh.shape[distributed.DATA_AXIS]
    if batch_size % n_dev:
        raise ValueError(f"batches: batch size {batch_size} is not divisible by the {n_dev} devices "
                         "of mesh axis 'data'")
    if shard_latents:
        state = distributed.shard_axis_of_size(state, mesh, width, distributed.MODEL_AXIS)
    else:
        state = distributed.replicate(state, mesh)
    return state, lambda b: distributed.shard_batch(b, mesh)


def fit(step, state: TrainState, batches, *, steps: int, check, log: History, save=None, save_every: int = 0,
        prefetch: int = 2, desc: str = "sae", show_progress: bool | None = None) -> TrainState:
    """Run `step` on batches state.step .. steps - 1 (fetched and `check`ed in a background
    thread), recording metrics in `log` and calling `save(state)` every `save_every` steps."""
    start = int(state.step)
    pre = Prefetcher(batch_iter(batches, start, steps), check, size=prefetch)
    try:
        for i, x in progress(pre, total=steps, initial=start, desc=desc, enabled=show_progress):
            state, metrics = step(state, x)
            log.record(i, metrics)
            if save is not None and (i + 1) % save_every == 0:
                save(state)
    finally:
        pre.close()
    return state


def train(batches, *, method: str | Method = "gba", width: int, steps: int, key: jax.Array, lr: float = 3e-3,
          optimizer: optax.GradientTransformation | None = None, dead_steps: int = 200, scale_warmup: int = 0,
          normalize: bool = True, dtype=jnp.float32, log_every: int = 10,
          checkpoint: Checkpoint | str | Path | None = None, checkpoint_dir: str | Path | None = None,
          checkpoint_every: int = 500, resume: bool = True, prefetch: int = 2, show_progress: bool | None = None,
          mesh=None, shard_latents: bool = False, **options) -> tuple[SAE, dict[str, np.ndarray]]:
    """Train a sparse autoencoder on `batches` (each (B, d)) for `steps` steps.

    method: a method value (`sae.GBA(...)`, `sae.TopK(k=32)`, ...) or its name in METHODS, with
      `options` its fields (`method="ba", target=0.01`; a setting the method lacks raises).
    width M >= 1; steps >= 1; key: init PRNG key or int seed; lr (Adam) or `optimizer`; dead_steps: a latent silent
    for longer is dead (history, AuxK); scale_warmup: the output scale a is frozen at its start
    for this many steps (the theory's decoupled a -> 0 phase); checkpoint: a `Checkpoint` or a
    folder (or checkpoint_dir / checkpoint_every / resume); mesh (axis "data"): data-parallel
    steps equal to the single-device step on the same global batch; shard_latents (mesh axes
    "data" and "model"): every latent-sized array split over "model".
    Returns (model, history): history[name] (steps // log_every,) for name in HISTORY_KEYS (loss,
    mse, fvu per batch in normalised units; l0 mean active latents per sample; dead fraction),
    and history["finite"]. Raises ValueError naming the argument for bad settings or batches, or
    naming checkpoint_dir and the settings for a checkpoint of another run; a damaged checkpoint
    raises jsparse.CorruptFileError.
    """
    meth = as_method(method, **options)
    width = val.check_int(width, "width", minimum=1)
    steps = val.check_int(steps, "steps", minimum=1)
    log_every = val.check_int(log_every, "log_every", minimum=1)
    val.check_positive(lr, "lr")
    dead_steps = val.check_int(dead_steps, "dead_steps", minimum=0)
    scale_warmup = val.check_int(scale_warmup, "scale_warmup", minimum=0)
    ckpt = ckpt_io.as_checkpoint(checkpoint, checkpoint_dir, checkpoint_every, resume)
    key = val.as_key(key, "key")
    x0, d, batch_size, batches = _first_batch(batches, dtype)
    meth = meth.resolve(d, width)
    model = build(meth, d, width, key, dtype=dtype)
    state = init_state(model, optax.adam(lr) if optimizer is None else optimizer, meth, x0, normalize)
    graphdef, part = nnx.graphdef(model), meth.step_part()
    step = (_cached_step(graphdef, part, float(lr), dead_steps, scale_warmup) if optimizer is None
            else make_step(graphdef, part, optimizer, dead_steps=dead_steps, scale_warmup=scale_warmup))
    log = History(steps, log_every)
    meta = ckpt_io.run_meta(meth, width=width, steps=steps, d=d, batch_size=batch_size, log_every=log_every,
                            dead_steps=dead_steps, scale_warmup=scale_warmup, lr=lr, dtype=dtype, normalize=normalize,
                            key=key)
    saved = ckpt_io.restore(ckpt, meta, (state, log.hist))
    if saved is not None:
        state = saved[0]
        log.restore(saved[1])
    state, place = _distribute(state, mesh, shard_latents, batch_size, width)
    save = None if ckpt is None else (lambda s: ckpt_io.save(ckpt, meta, s, log.flush()))
    state = fit(step, state, batches, steps=steps, check=lambda b, i: place(check_batch(b, i, d, batch_size, dtype)),
                log=log, save=save, save_every=ckpt.every if ckpt else 0, prefetch=prefetch,
                desc=f"sae/{meth.name}", show_progress=show_progress)
    if save is not None:
        save(state)
    nnx.update(model, state.params, state.rest)
    return model, log.result(state.finite)
