"""(Group) Bias Adaptation: the frequency-feedback rule that sets each latent's bias.

Latents are split into K contiguous groups; group k has target activation frequency
p_k = HTF * (LTF / HTF)^((k - 1) / (K - 1)) (geometric, highest first). BA is K = 1.

Within a window of `update_every` steps the rule needs, per latent m, only
  * the firing count   c_m = sum over the window's samples of 1[y_m > 0]
  * the peak           r_m = max(0, max over the window of y_m)
(O(M) accumulators updated inside the jitted step: no B x M buffer of pre-activations).
At the end of the window, with p_hat_m = c_m / (#samples) and the group baseline
s_k = mean of r_m over the latents of group k with r_m > 0 (0 if none):
  over-active  p_hat_m > p_k :  b_m <- max(b_m - gamma_minus * r_m, bias_low)
  dead         p_hat_m < eps :  b_m <- min(b_m + gamma_plus * s_k, bias_high)
  otherwise unchanged; the accumulators are then cleared.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jsparse.core import validation as val

__all__ = [
    "GBAConfig",
    "WindowStats",
    "target_frequencies",
    "group_ids",
    "init_stats",
    "accumulate",
    "update_bias",
    "maybe_update",
    "make_config",
    "check_frequencies",
    "quantile_bias",
]


class GBAConfig(NamedTuple):
    """Static settings plus the per-latent target vector.

    targets: (M,) target frequency of each latent's group. groups: (M,) int32 group ids.
    """

    targets: jax.Array
    groups: jax.Array
    num_groups: int
    gamma_minus: float = 0.01
    gamma_plus: float = 0.01
    eps: float = 1e-6
    update_every: int = 50
    bias_low: float = -1.0
    bias_high: float = 0.0


class WindowStats(NamedTuple):
    """Window accumulators: counts (M,) fires, peaks (M,) max(0, y), samples () int32."""

    counts: jax.Array
    peaks: jax.Array
    samples: jax.Array


def check_frequencies(freqs: np.ndarray, name: str) -> None:
    """Raise ValueError naming `name` unless freqs is non-empty, 1-D, in (0, 1), strictly decreasing."""
    if freqs.ndim != 1 or freqs.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D sequence of frequencies")
    if not np.all(np.isfinite(freqs)) or np.any(freqs <= 0) or np.any(freqs >= 1):
        raise ValueError(f"{name}: frequencies must lie in (0, 1), got {freqs.tolist()}")
    if np.any(np.diff(freqs) >= 0):
        raise ValueError(f"{name}: frequencies must be strictly decreasing, got {freqs.tolist()}")


def target_frequencies(num_groups: int, htf: float = 0.5, ltf: float = 1e-3) -> np.ndarray:
    """Geometric targets (K,) from `htf` (group 0) down to `ltf` (group K-1).

    K = 1 gives [htf]. Raises ValueError naming the argument for htf/ltf outside (0, 1) or
    htf <= ltf when K > 1.
    """
    num_groups = val.check_int(num_groups, "groups", minimum=1)
    val.check_in_range(htf, "htf", 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    if num_groups == 1:
        return np.array([float(htf)])
    val.check_in_range(ltf, "ltf", 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    if not htf > ltf:
        raise ValueError(f"htf: must be greater than ltf (targets decrease), got htf={htf}, ltf={ltf}")
    return htf * (ltf / htf) ** (np.arange(num_groups) / (num_groups - 1))


def group_ids(width: int, num_groups: int) -> np.ndarray:
    """Contiguous near-equal blocks: latent m is in group floor(m K / M). Shape (M,) int32."""
    width = val.check_int(width, "width", minimum=1)
    num_groups = val.check_int(num_groups, "groups", minimum=1)
    if num_groups > width:
        raise ValueError(f"groups: {num_groups} groups exceed width {width}")
    return (np.arange(width) * num_groups // width).astype(np.int32)


def make_config(
    width: int,
    *,
    groups: int = 10,
    htf: float = 0.5,
    ltf: float = 1e-3,
    targets: Sequence[float] | None = None,
    gamma_minus: float = 0.01,
    gamma_plus: float = 0.01,
    eps: float = 1e-6,
    update_every: int = 50,
    dtype=jnp.float32,
) -> GBAConfig:
    """Validated GBAConfig. `targets` (explicit, strictly decreasing, in (0, 1)) overrides
    groups/htf/ltf; BA is `groups=1` with `htf` the single target."""
    if targets is not None:
        freqs = np.asarray(targets, dtype=np.float64).reshape(-1)
        check_frequencies(freqs, "targets")
        groups = freqs.size
    else:
        freqs = target_frequencies(groups, htf, ltf)
    gid = group_ids(width, groups)
    val.check_positive(gamma_minus, "gamma_minus", allow_zero=True)
    val.check_positive(gamma_plus, "gamma_plus", allow_zero=True)
    val.check_in_range(eps, "eps", 0.0, 1.0)
    val.check_int(update_every, "update_every", minimum=1)
    return GBAConfig(
        targets=jnp.asarray(freqs[gid], dtype),
        groups=jnp.asarray(gid),
        num_groups=int(groups),
        gamma_minus=float(gamma_minus),
        gamma_plus=float(gamma_plus),
        eps=float(eps),
        update_every=int(update_every),
    )


def init_stats(width: int, dtype=jnp.float32) -> WindowStats:
    return WindowStats(jnp.zeros((width,), jnp.int32), jnp.zeros((width,), dtype), jnp.zeros((), jnp.int32))


def accumulate(stats: WindowStats, y: jax.Array) -> WindowStats:
    """Add one batch of pre-activations y (B, M) to the window accumulators."""
    fires = jnp.sum(y > 0, axis=0, dtype=jnp.int32)
    peak = jnp.maximum(jnp.max(y, axis=0), 0).astype(stats.peaks.dtype)
    return WindowStats(stats.counts + fires, jnp.maximum(stats.peaks, peak), stats.samples + y.shape[0])


def update_bias(bias: jax.Array, stats: WindowStats, cfg: GBAConfig) -> jax.Array:
    """The end-of-window rule (module docstring) applied to bias (M,)."""
    bias = val.check_array(bias, "bias", ndim=1, dtype="float")
    val.check_array(stats.peaks, "peaks", shape=bias.shape, dtype="float")
    val.check_array(stats.counts, "counts", shape=bias.shape, dtype="numeric")
    dtype = bias.dtype
    freq = stats.counts.astype(dtype) / jnp.maximum(stats.samples, 1).astype(dtype)
    r = stats.peaks
    pos = (r > 0).astype(dtype)
    num = jax.ops.segment_sum(r * pos, cfg.groups, num_segments=cfg.num_groups)
    den = jax.ops.segment_sum(pos, cfg.groups, num_segments=cfg.num_groups)
    baseline = jnp.where(den > 0, num / jnp.maximum(den, 1), 0)[cfg.groups]
    down = jnp.maximum(bias - cfg.gamma_minus * r, cfg.bias_low)
    up = jnp.minimum(bias + cfg.gamma_plus * baseline, cfg.bias_high)
    over = freq > cfg.targets.astype(dtype)
    dead = freq < cfg.eps
    return jnp.where(over, down, jnp.where(dead, up, bias)).astype(dtype)


def maybe_update(bias: jax.Array, stats: WindowStats, step: jax.Array, cfg: GBAConfig):
    """After accumulating the batch of (0-based) step `step`: if step + 1 closes a window,
    apply the rule and clear the stats. Returns (bias, stats, window_closed)."""
    closed = (step + 1) % cfg.update_every == 0
    new_bias = jnp.where(closed, update_bias(bias, stats, cfg), bias)
    cleared = jax.tree_util.tree_map(lambda a: jnp.where(closed, jnp.zeros_like(a), a), stats)
    return new_bias, cleared, closed


def quantile_bias(u: jax.Array, targets: jax.Array, low: float = -1.0, high: float = 0.0) -> jax.Array:
    """Biases (M,) at which latent m fires on a fraction targets[m] of the rows of u (B, M):
    b_m = -(the (1 - p_m) empirical quantile of u[:, m]) (order statistic ceil((1 - p_m) B) - 1 of
    the sorted column: the top floor(p_m B) rows fire), clamped to [low, high]."""
    b = u.shape[0]
    srt = jnp.sort(u, axis=0)
    idx = jnp.clip(jnp.ceil((1 - targets) * b).astype(jnp.int32) - 1, 0, b - 1)
    return jnp.clip(-jnp.take_along_axis(srt, idx[None, :], axis=0)[0], low, high).astype(u.dtype)
