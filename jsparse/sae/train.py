"""`train(batches, method=..., width, steps, key)`: one jitted step per batch, all methods.

Methods (defaults in `METHOD_DEFAULTS`):
  gba       tied SAE + output scale + pre-bias, jump gate u * 1[u + b > 0], bias b moved by
            group bias adaptation (`gba.py`), loss = reconstruction only.
  ba        the same with one group (target `target`).
  topk      untied, exact k per sample + AuxK dead-latent loss (Gao et al.).
  batchtopk untied, k * B per batch + AuxK; inference threshold = EMA of the smallest kept value.
  relu_l1   untied ReLU + l1 * sum_m |f_m| ||d_m||.
  jumprelu  untied JumpReLU + l0 * L0 with the rectangle-kernel straight-through estimator.

Reconstruction loss = 1/2 mean_b ||x_hat - x||^2 in normalised units: inputs are scaled by one
constant c (unit mean squared norm, from the first batch, the Gemma Scope / dictionary_learning
convention) so that GBA's bias range [-1, 0] spans the data (paper notes section 4.4). The
pre-bias starts at the first batch's mean (sparsify). Decoder rows are re-normalised to unit
norm after every step (all methods; the output scale a carries the magnitude in GBA/BA).

Data pipeline: a background thread fetches and validates batch i + 1 (shape, NaN) while the
jitted step of batch i runs. Checkpoints (`checkpoint_dir`, every `checkpoint_every` steps) hold
the whole train state and the history so far; a re-run resumes from the last one and ends
bit-identical to an uninterrupted run (batch i must depend only on i: pass a `SyntheticStream`,
a callable i -> batch, or a re-iterable that is skipped ahead).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jsparse.core import distributed, records
from jsparse.core import validation as val
from jsparse.core.progress import progress

from . import gba
from .pipeline import Prefetcher, batch_iter, check_batch
from .model import SAE, step_fn

__all__ = ["train", "TrainState", "METHODS", "METHOD_DEFAULTS", "build", "make_step", "init_state", "quantile_bias"]

METHODS = ("gba", "ba", "topk", "batchtopk", "relu_l1", "jumprelu")

METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "gba": dict(activation="adaptive", tied=True, output_scale=True),
    "ba": dict(activation="adaptive", tied=True, output_scale=True),
    "topk": dict(activation="topk", tied=False, output_scale=False),
    "batchtopk": dict(activation="batchtopk", tied=False, output_scale=False),
    "relu_l1": dict(activation="relu", tied=False, output_scale=False),
    "jumprelu": dict(activation="jumprelu", tied=False, output_scale=False),
}

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


class Options(NamedTuple):
    method: str
    k: int | None
    l1: float
    l0: float
    aux_coef: float
    aux_k: int
    dead_steps: int
    threshold_rate: float
    adapt: bool = True  # False: GBA/BA without the window statistics and bias rule (benchmarks)
    scale_warmup: int = 0  # steps during which the output scale a gets no update (decoupled phase)


def build(method: str, d: int, width: int, key: jax.Array, *, k=None, tied=None, output_scale=None,
          gate="jump", jump_threshold=0.05, bandwidth=0.05, scale_init=1.0, dtype=jnp.float32) -> SAE:
    """The SAE a method trains, with the method's defaults unless overridden."""
    val.check_choice(method, "method", METHODS)
    o = dict(METHOD_DEFAULTS[method])
    if tied is not None:
        o["tied"] = bool(tied)
    if output_scale is not None:
        o["output_scale"] = bool(output_scale)
    return SAE(d, width, k=k, gate=gate, jump_threshold=jump_threshold, bandwidth=bandwidth, scale_init=scale_init,
               rngs=nnx.Rngs(params=key), dtype=dtype, **o)


def _aux_loss(model: SAE, z, resid, dead, aux_k):
    """AuxK: reconstruct the (stop-gradient) residual from the top aux_k dead latents."""
    zd = jnp.where(dead[None, :], z, -jnp.inf)
    vals, idx = jax.lax.top_k(zd, aux_k)
    acts = jnp.where(jnp.isfinite(vals), jax.nn.relu(vals), 0)
    rec = jnp.einsum("bk,bkd->bd", acts, model.decoder_weight()[idx])
    num_dead = jnp.sum(dead).astype(z.dtype)
    scale = jnp.minimum(num_dead / aux_k, 1.0)
    return scale * 0.5 * jnp.mean(jnp.sum((resid - rec) ** 2, axis=1))


def make_step(graphdef, opts: Options, cfg: gba.GBAConfig | None, optimizer: optax.GradientTransformation):
    """The jitted train step: (state, x (B, d)) -> (state, metrics dict of scalars)."""
    method = opts.method

    def loss_fn(params, rest, x, dead):
        m = nnx.merge(graphdef, params, rest)
        xn = x * m.input_scale[...]
        u = m.projections(x)
        z = m.pre_activations(x, u=u)
        codes = m.activate(u, train=True)
        b_pre = m.b_pre[...][None, :] if m.b_pre is not None else 0
        xhat = codes @ m.decoder_weight() + b_pre
        resid = xn - xhat
        mse = 0.5 * jnp.mean(jnp.sum(resid**2, axis=1))
        loss = mse
        if method == "relu_l1":
            norms = jnp.linalg.norm(m.decoder_weight(), axis=1)
            loss = loss + opts.l1 * jnp.mean(jnp.sum(codes * norms[None, :], axis=1))
        elif method == "jumprelu":
            theta = jnp.exp(m.log_threshold[...])[None, :]
            loss = loss + opts.l0 * jnp.mean(jnp.sum(step_fn(z, theta, m.bandwidth), axis=1))
        elif method in ("topk", "batchtopk") and opts.aux_coef > 0:
            loss = loss + opts.aux_coef * _aux_loss(m, z, jax.lax.stop_gradient(resid), dead, opts.aux_k)
        var = jnp.sum((xn - jnp.mean(xn, axis=0, keepdims=True)) ** 2)
        aux = dict(mse=mse, fvu=jnp.sum(resid**2) / var, codes=codes, z=jax.lax.stop_gradient(z))
        return loss, aux

    def step(state: TrainState, x: jax.Array):
        dead = (state.step - state.last_fired) > opts.dead_steps
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.rest, x, dead)
        if opts.scale_warmup > 0 and "scale" in grads:  # a frozen: Adam sees zero gradients (zero update)
            on = (state.step >= opts.scale_warmup).astype(x.dtype)
            grads = nnx.State({k: (jax.tree_util.tree_map(lambda g: g * on, v) if k == "scale" else v)
                               for k, v in grads.items()})
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        m = nnx.merge(graphdef, params, state.rest)
        m.normalize_rows()
        codes = aux["codes"]
        fired = jnp.any(codes > 0, axis=0)
        stats = state.stats
        if method in ("gba", "ba") and opts.adapt:
            stats = gba.accumulate(stats, aux["z"])
            cfg_t = cfg._replace(targets=state.targets)
            new_bias, stats, _ = gba.maybe_update(m.bias[...], stats, state.step, cfg_t)
            m.bias[...] = new_bias
        if method == "batchtopk":
            kept_min = jnp.min(jnp.where(codes > 0, codes, jnp.inf))
            kept_min = jnp.where(jnp.isfinite(kept_min), kept_min, m.threshold[...])
            thr = m.threshold[...]
            m.threshold[...] = jnp.where(state.step == 0, kept_min, thr + opts.threshold_rate * (kept_min - thr))
        _, params, rest = nnx.split(m, nnx.Param, ...)
        new = TrainState(
            params=params,
            rest=rest,
            opt_state=opt_state,
            stats=stats,
            targets=state.targets,
            last_fired=jnp.where(fired, state.step + 1, state.last_fired),
            step=state.step + 1,
            finite=state.finite & jnp.isfinite(loss),
        )
        metrics = dict(
            step=state.step + 1,
            loss=loss,
            mse=aux["mse"],
            fvu=aux["fvu"],
            l0=jnp.mean(jnp.sum(codes > 0, axis=1).astype(loss.dtype)),
            dead=jnp.mean(dead.astype(loss.dtype)),
        )
        return new, metrics

    return jax.jit(step, donate_argnums=0)


@functools.lru_cache(maxsize=32)
def _cached_step(graphdef, opts: Options, static, lr: float, width: int):
    """make_step for the default optimiser, memoised on hashable settings. The GBA targets are
    read from the state (so a sweep over targets reuses the compiled step); the config built
    here only supplies the static group ids and rule constants."""
    cfg = None
    if static is not None:
        num_groups, gm, gp, eps, every = static
        cfg = gba.make_config(width, groups=num_groups, htf=0.5, ltf=0.25, gamma_minus=gm, gamma_plus=gp,
                              eps=eps, update_every=every)
    return make_step(graphdef, opts, cfg, optax.adam(lr))


def quantile_bias(u: jax.Array, targets: jax.Array, low: float = -1.0, high: float = 0.0) -> jax.Array:
    """Biases (M,) at which latent m fires on a fraction targets[m] of the rows of u (B, M):
    b_m = -(the (1 - p_m) empirical quantile of u[:, m]) (order statistic ceil((1 - p_m) B) - 1 of
    the sorted column: the top floor(p_m B) rows fire), clamped to [low, high]."""
    b = u.shape[0]
    srt = jnp.sort(u, axis=0)
    idx = jnp.clip(jnp.ceil((1 - targets) * b).astype(jnp.int32) - 1, 0, b - 1)
    return jnp.clip(-jnp.take_along_axis(srt, idx[None, :], axis=0)[0], low, high).astype(u.dtype)


def init_state(model: SAE, optimizer, cfg: gba.GBAConfig | None, x0: jax.Array, normalize: bool,
               bias_init: str = "zero") -> TrainState:
    """Set the input scale and pre-bias from the first batch x0 (and, with bias_init="quantile",
    the GBA/BA biases at their targets' quantiles on x0), then the fresh TrainState."""
    dtype = model.w_enc[...].dtype
    x0 = jnp.asarray(x0, dtype)
    if normalize:
        model.input_scale[...] = (1.0 / jnp.sqrt(jnp.mean(jnp.sum(x0**2, axis=1)))).astype(dtype)
    if model.b_pre is not None:
        model.b_pre[...] = jnp.mean(x0, axis=0) * model.input_scale[...]
    if bias_init == "quantile" and cfg is not None and model.bias is not None:
        model.bias[...] = quantile_bias(model.projections(x0), cfg.targets.astype(dtype), cfg.bias_low, cfg.bias_high)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    width = model.width
    targets = jnp.array(cfg.targets) if cfg is not None else jnp.ones((width,), dtype)
    return TrainState(
        params=params,
        rest=rest,
        opt_state=optimizer.init(params),
        stats=gba.init_stats(width, dtype),
        targets=targets.astype(dtype),
        last_fired=jnp.zeros((width,), jnp.int32),
        step=jnp.zeros((), jnp.int32),
        finite=jnp.ones((), bool),
    )


# -- the public entry point ----------------------------------------------------------------
def train(
    batches,
    *,
    method: str = "gba",
    width: int,
    steps: int,
    key: jax.Array,
    lr: float = 3e-3,
    optimizer: optax.GradientTransformation | None = None,
    k: int | None = None,
    groups: int = 10,
    htf: float = 0.5,
    ltf: float = 1e-3,
    targets=None,
    target: float | None = None,
    gamma_minus: float = 0.01,
    gamma_plus: float = 0.01,
    eps: float = 1e-6,
    update_every: int = 10,
    l1: float = 3e-2,
    l0: float = 1e-2,
    aux_coef: float = 1 / 32,
    aux_k: int | None = None,
    dead_steps: int = 200,
    threshold_rate: float = 0.01,
    tied: bool | None = None,
    output_scale: bool | None = None,
    gate: str = "jump",
    jump_threshold: float = 0.05,
    bandwidth: float = 0.05,
    scale_init: float | None = None,
    scale_warmup: int = 0,
    bias_init: str = "zero",
    normalize: bool = True,
    dtype=jnp.float32,
    log_every: int = 10,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 500,
    resume: bool = True,
    prefetch: int = 2,
    show_progress: bool | None = None,
    mesh=None,
    shard_latents: bool = False,
) -> tuple[SAE, dict[str, np.ndarray]]:
    """Train a sparse autoencoder on `batches` (each (B, d)) for `steps` steps.

    Args (main): method in METHODS; width M >= 1; steps >= 1; key (init). k: latents per sample
      for topk/batchtopk (default 32). GBA: groups K (<= width), htf > ltf in (0, 1), or explicit
      strictly decreasing `targets`; BA: `target` (default sqrt(htf * ltf), the geometric middle
      of GBA's range). gamma_minus/plus, eps, update_every: the bias rule. l1 / l0: penalties of
      relu_l1 / jumprelu. aux_coef, aux_k (default d // 2), dead_steps: AuxK and the dead flag.
      scale_warmup: the output scale a (GBA/BA) is frozen at `scale_init` for this many steps,
      so every latent learns from the whole input (the theory's decoupled a -> 0 phase).
      bias_init (GBA/BA): "zero" (the paper: every bias starts at 0, about half the latents fire,
      and the rule walks them down) or "quantile" (each bias starts where its latent fires at its
      target frequency on the first batch, `quantile_bias`; the rule then tracks the drift).
    Returns: (model, history) with history[name] (steps // log_every,) for name in HISTORY_KEYS
      (loss, mse and fvu per batch in normalised units; l0 mean active latents per sample; dead
      = fraction of latents silent for more than dead_steps steps).
    Data parallelism: `mesh` (a `jax.sharding.Mesh` with an axis named "data", e.g.
      `jsparse.core.distributed.data_mesh()`) splits every batch over that axis and replicates the
      parameters, optimizer state and GBA statistics; the fire counts and maxima become
      all-reduces, so each step equals the single-device step on the same global batch.
      `shard_latents=True` (mesh with axes "data" and "model") also splits every array with a
      latent dimension (weights, biases, Adam moments, GBA statistics) over "model", for SAEs
      too wide for one device.
    Raises: ValueError naming the argument (width, groups, htf/ltf/targets/target, batches: NaN,
      wrong feature dimension or row count, mesh without a "data" axis or a batch size it does not
      divide, ...).
    """
    val.check_choice(method, "method", METHODS)
    width = val.check_int(width, "width", minimum=1)
    steps = val.check_int(steps, "steps", minimum=1)
    log_every = val.check_int(log_every, "log_every", minimum=1)
    checkpoint_every = val.check_int(checkpoint_every, "checkpoint_every", minimum=1)
    val.check_positive(lr, "lr")
    if method in ("topk", "batchtopk"):
        k = 32 if k is None else k
        val.check_int(k, "k", minimum=1, maximum=width)
    cfg = None
    if method == "gba":
        cfg = gba.make_config(width, groups=groups, htf=htf, ltf=ltf, targets=targets, gamma_minus=gamma_minus,
                              gamma_plus=gamma_plus, eps=eps, update_every=update_every, dtype=dtype)
    elif method == "ba":
        target = float(np.sqrt(htf * ltf)) if target is None else target
        val.check_in_range(target, "target", 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        cfg = gba.make_config(width, groups=1, htf=target, gamma_minus=gamma_minus, gamma_plus=gamma_plus,
                              eps=eps, update_every=update_every, dtype=dtype)

    first = next(batch_iter(batches, 0, 1))[1]
    x0 = jnp.asarray(first)
    if x0.ndim != 2:
        raise ValueError(f"batches: expected (batch, d) arrays, got shape {tuple(x0.shape)}")
    d, batch_size = int(x0.shape[1]), int(x0.shape[0])
    x0 = check_batch(x0, 0, d, batch_size, dtype)
    aux_k = max(d // 2, 1) if aux_k is None else val.check_int(aux_k, "aux_k", minimum=1)
    aux_k = min(aux_k, width)
    if scale_init is None:  # small a for GBA/BA: the theory's a -> 0 decoupling (see docs/sae.md)
        scale_init = 0.01 if method in ("gba", "ba") else 1.0
    scale_warmup = val.check_int(scale_warmup, "scale_warmup", minimum=0)
    val.check_choice(bias_init, "bias_init", ("zero", "quantile"))
    opts = Options(method, k, float(l1), float(l0), float(aux_coef), aux_k, int(dead_steps), float(threshold_rate),
                   scale_warmup=scale_warmup)

    model = build(method, d, width, key, k=k, tied=tied, output_scale=output_scale, gate=gate,
                  jump_threshold=jump_threshold, bandwidth=bandwidth, scale_init=scale_init, dtype=dtype)
    user_optimizer = optimizer is not None
    optimizer = optimizer if user_optimizer else optax.adam(lr)
    state = init_state(model, optimizer, cfg, x0, normalize, bias_init)
    graphdef = nnx.graphdef(model)
    if user_optimizer:
        step_fn_ = make_step(graphdef, opts, cfg, optimizer)
    else:  # same settings -> same compiled step (sweeps compile once; targets live in the state)
        static = None if cfg is None else (cfg.num_groups, cfg.gamma_minus, cfg.gamma_plus, cfg.eps, cfg.update_every)
        step_fn_ = _cached_step(graphdef, opts, static, float(lr), width)

    num_logs = steps // log_every
    hist = {name: np.full((num_logs,), np.nan) for name in HISTORY_KEYS}
    start = 0
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    meta = dict(method=method, width=width, steps=steps, d=d, batch_size=batch_size, log_every=log_every,
                opts={k_: v for k_, v in opts._asdict().items() if not (k_ == "scale_warmup" and v == 0)},
                lr=lr, dtype=str(jnp.dtype(dtype)))  # (scale_warmup 0 omitted: older checkpoints still resume)
    if bias_init != "zero":
        meta["bias_init"] = bias_init
    if ckpt is not None and resume and (ckpt / "state.npz").exists():
        saved_meta = records.read_json(ckpt / "meta.json")
        if saved_meta != json.loads(json.dumps(records.to_builtin(meta))):
            raise ValueError(f"checkpoint_dir: {ckpt} holds a run with different settings")
        state, hist = records.load_pytree(ckpt / "state.npz", (state, hist))
        hist = {k_: np.array(v) for k_, v in hist.items()}  # writable copies
        start = int(state.step)

    pending: list[tuple[int, dict]] = []

    def flush():
        for j, m in pending:
            for name, v in m.items():
                hist[name][j] = float(v)
        pending.clear()

    def save():
        flush()
        records.write_json(ckpt / "meta.json", meta)
        records.save_pytree(ckpt / "state.npz", (state, hist))

    place = lambda b: b  # noqa: E731
    if shard_latents and (mesh is None or distributed.MODEL_AXIS not in mesh.axis_names):
        raise ValueError("mesh: shard_latents=True needs a mesh with axes 'data' and 'model'")
    if mesh is not None:
        mesh = distributed.data_mesh(mesh=mesh)
        n_dev = mesh.shape[distributed.DATA_AXIS]
        if batch_size % n_dev:
            raise ValueError(f"batches: batch size {batch_size} is not divisible by the {n_dev} devices of mesh axis 'data'")
        if shard_latents:
            state = distributed.shard_axis_of_size(state, mesh, width, distributed.MODEL_AXIS)
        else:
            state = distributed.replicate(state, mesh)
        place = lambda b: distributed.shard_batch(b, mesh)  # noqa: E731
    source = batch_iter(batches, start, steps)
    pre = Prefetcher(source, lambda b, i: place(check_batch(b, i, d, batch_size, dtype)), size=prefetch)
    try:
        for i, x in progress(pre, total=steps, initial=start, desc=f"sae/{method}", enabled=show_progress):
            state, metrics = step_fn_(state, x)
            if (i + 1) % log_every == 0 and (i + 1) // log_every - 1 < num_logs:
                pending.append(((i + 1) // log_every - 1, metrics))
            if ckpt is not None and (i + 1) % checkpoint_every == 0:
                save()
    finally:
        pre.close()
    flush()
    if ckpt is not None:
        save()
    nnx.update(model, state.params, state.rest)
    hist = {k_: (v.astype(np.int64) if k_ == "step" else v) for k_, v in hist.items()}
    hist["finite"] = np.asarray(bool(state.finite))
    return model, hist
