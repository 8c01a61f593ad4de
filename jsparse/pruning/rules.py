"""Pruning rules on parameter pytrees with boolean masks: SAP and magnitude (OS / LT baselines).

Masks are a pytree of booleans with the parameters' structure and shapes (True = kept).  Only
leaves chosen by `filter(path, leaf)` are pruned (default: ndim > 1, the paper's rule); the
other masks pass through unchanged.  Shapes never change: pruning flips mask entries.

Counting and ties follow the reference code:
* SAP: r = ceil(d (1+eta_r)^{-q/(q-p)} (1-I)^{qp/(q-p)}), c = floor(d * clip(gamma (1 - r/d), 0, beta)),
  evaluated as floor(clip(gamma (d - r), 0, beta d)) so that gamma = 1 gives exactly d - r.
  The threshold is the c-th smallest (0-based) remaining magnitude; entries strictly below it
  are pruned, ties at it are kept.
* Magnitude(P): the threshold is the P-quantile (linear interpolation, numpy's default) of the
  remaining magnitudes; entries strictly below it are pruned.
Scopes: "global" (one threshold over all pruned leaves, raw magnitudes), "layer" (per leaf),
"neuron" (per output unit = last axis of a Flax kernel).

The k-th smallest of float32 magnitudes is found exactly by a radix select on the IEEE bit
patterns (`select.py`), which avoids a full sort of millions of weights.  Global SAP on float32
runs as one fused pass structure over all pruned leaves (`_sap_global_f32`) that reads the
weights four times (PQ sums, two histogram passes, new masks).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jsparse.core import validation
from jsparse.pruning.pq_index import (
    check_pq,
    default_filter,
    index_from_sums,
    masked_abs,
    max_scale,
    power_sums,
    safe_pow,
)
from jsparse.pruning.select import kth_smallest, kth_smallest_rows

__all__ = ["SAP", "Magnitude", "magnitude", "PruneInfo", "init_masks", "apply_masks", "remaining", "kth_smallest",
           "kth_smallest_rows", "prune_step", "sap_counts", "group_sums"]

SCOPES = ("global", "layer", "neuron")


class PruneInfo(NamedTuple):
    """What one pruning step saw and did.  One entry per scope group, in leaf order:
    global -> scalars; layer -> lists of scalars (one per pruned leaf); neuron -> lists of (out,)."""

    masks: Any
    index: Any  # PQ Index (SAP) or the magnitude threshold's quantile level (Magnitude)
    d: Any  # remaining count before pruning
    r: Any  # SAP's retained bound (ceil); Magnitude: d - count
    count: Any  # number pruned


def init_masks(params: Any) -> Any:
    """All-True boolean masks with the structure and shapes of `params`."""
    return jax.tree_util.tree_map(lambda x: jnp.ones(jnp.shape(x), bool), params)


def apply_masks(params: Any, masks: Any) -> Any:
    """params with pruned entries set to exactly 0 (same structure, shapes and dtypes)."""
    validation.check_same_tree(masks, params, "masks", "params")
    return jax.tree_util.tree_map(lambda p, m: jnp.where(m, p, jnp.zeros((), p.dtype)), params, masks)


def remaining(masks: Any, params: Any, filter: Callable = default_filter) -> tuple[jax.Array | float, list[jax.Array]]:
    """(global remaining fraction, [per pruned-leaf fraction]) over the leaves `filter` selects (0.0, [] if none)."""
    ms = [m for (path, p), m in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree_util.tree_leaves(masks))
          if filter(path, p)]
    kept = sum(jnp.sum(m) for m in ms)
    total = sum(m.size for m in ms)
    return kept / max(total, 1), [jnp.mean(m) for m in ms]


def _validate(params: Any, masks: Any) -> None:
    validation.check_same_tree(masks, params, "masks", "params")
    validation.check_tree(masks, "masks", boolean=True)
    validation.check_tree(params, "params")  # NaN/Inf would sort anywhere and prune arbitrary weights


def _rows(x: jax.Array) -> jax.Array:
    """A Flax kernel (..., out) as (out, fan_in): one row per output neuron."""
    return x.reshape(-1, x.shape[-1]).T


def _unrows(x: jax.Array, shape) -> jax.Array:
    return x.T.reshape(shape)


class _Rule:
    """Shared driver: select leaves, group them by scope, threshold each group."""

    scope: str
    filter: Callable

    def prune(self, params: Any, masks: Any) -> Any:
        """New masks (old mask AND kept set).  Pure; jit/vmap-able; shapes unchanged."""
        return self.prune_with_info(params, masks).masks

    def prune_with_info(self, params: Any, masks: Any) -> PruneInfo:
        _validate(params, masks)
        for path, p in jax.tree_util.tree_leaves_with_path(params):
            if self.filter(path, p) and jnp.size(p) == 0:
                raise ValueError(f"params{jax.tree_util.keystr(path)}: zero-size leaf {jnp.shape(p)} selected for "
                                 "pruning; exclude it with `filter`")
        return _prune_jit(self, params, masks)

    # Per group (a list of weight arrays; axis=1 when each row is its own group, i.e. neurons):
    def _count(self, w_list, m_list, axis):  # pragma: no cover - abstract
        """-> (index, d remaining, r, c to prune)."""
        raise NotImplementedError

    def _threshold(self, a_list, c, d, axis):  # pragma: no cover - abstract
        """Threshold below which remaining entries are pruned (a_list: |w| with +inf at pruned)."""
        raise NotImplementedError


def prune_step(rule: _Rule, params: Any, masks: Any) -> PruneInfo:
    """One pruning round of `rule` on (params, masks), untraced: `rule.prune` is this under `jax.jit`
    (call it directly to jit it your own way, e.g. with buffer donation)."""
    flat = jax.tree_util.tree_leaves_with_path(params)
    mleaves, mdef = jax.tree_util.tree_flatten(masks)
    sel = [i for i, (path, p) in enumerate(flat) if rule.filter(path, p)]
    new = list(mleaves)
    if not sel:
        return PruneInfo(masks, [], [], [], [])
    w = [jnp.asarray(flat[i][1]) for i in sel]
    m = [mleaves[i] for i in sel]
    if isinstance(rule, SAP) and rule.scope == "global" and all(x.dtype == jnp.float32 for x in w):
        outs, *info = _sap_global_f32(rule, w, m)
        for i, k in enumerate(sel):
            new[k] = outs[i]
        return PruneInfo(jax.tree_util.tree_unflatten(mdef, new), *info)
    if rule.scope == "neuron":
        w, m = [_rows(x) for x in w], [_rows(x) for x in m]
        groups = [([x], [y], 1) for x, y in zip(w, m)]
    elif rule.scope == "layer":
        groups = [([x], [y], None) for x, y in zip(w, m)]
    else:
        groups = [(w, m, None)]
    outs, infos = [], []
    for gw, gm, axis in groups:
        idx, d, r, c = rule._count(gw, gm, axis)
        a = [jnp.where(y, jnp.abs(x), jnp.inf) for x, y in zip(gw, gm)]
        thr = rule._threshold(a, c, d, axis)
        thr = jnp.where(c >= d, jnp.inf, thr)  # prune every remaining entry (only when beta = 1)
        if axis is not None:
            thr = thr[:, None]
        outs.extend(y & (jnp.abs(x) >= thr) for x, y in zip(gw, gm))
        infos.append((idx, d, r, c))
    for i, k in enumerate(sel):
        new[k] = _unrows(outs[i], mleaves[k].shape) if rule.scope == "neuron" else outs[i]
    cols = list(zip(*infos))
    if rule.scope == "global":
        cols = [col[0] for col in cols]
    else:
        cols = [list(col) for col in cols]
    return PruneInfo(jax.tree_util.tree_unflatten(mdef, new), *cols)


_prune_jit = jax.jit(prune_step, static_argnums=0)


def sap_counts(rule, sp, sq, d):
    """(index, r, c) of SAP from the PQ sums (see SAP): r rounded up, c rounded down."""
    index = index_from_sums(sp, sq, d, rule.p, rule.q)
    bound = d * (1.0 + rule.eta_r) ** (-rule.q / (rule.q - rule.p)) * (1.0 - index) ** (
        rule.q * rule.p / (rule.q - rule.p))
    r = jnp.ceil(bound)
    # floor(d * clip(gamma (1 - r/d), 0, beta)) written as gamma (d - r): exact when gamma = 1
    # (in floats, d (1 - r/d) can land just below the integer d - r and lose one).
    c = jnp.floor(jnp.clip(rule.gamma * (d - r), 0.0, rule.beta * d)).astype(jnp.int32)
    return index, r.astype(jnp.int32), c


def _pq_sums_f32(rule, w_list, m_list, inv):
    """(max a, sum (a*inv)^p, sum (a*inv)^q, count) over the remaining entries a = |w|: one
    variadic reduction (one loop) per leaf, per row of the (fan_in, out) view, then a sum over the
    row partials: a single float32 accumulator over millions of entries loses ~1e-4 relative."""
    z = jnp.zeros((), jnp.float32)
    out = [z, z, z, jnp.zeros((), jnp.int32)]
    for x, y in zip(w_list, m_list):
        a = jnp.where(y, jnp.abs(x), z).reshape(-1, x.shape[-1])
        s = inv * a
        part = jax.lax.reduce((a, safe_pow(s, rule.p), safe_pow(s, rule.q), y.reshape(a.shape).astype(jnp.int32)),
                              (z, z, z, jnp.int32(0)),
                              lambda u, v: (jnp.maximum(u[0], v[0]), u[1] + v[1], u[2] + v[2], u[3] + v[3]), (1,))
        sums = [o + jnp.sum(t, dtype=o.dtype) for o, t in zip(out[1:], part[1:])]  # int32 count stays int32
        out = [jnp.maximum(out[0], jnp.max(part[0]))] + sums
    return out


def _sap_global_f32(rule, w_list, m_list):
    """Global SAP on float32 leaves in four passes over the weights -> (new masks, index, d, r, c).

    1. max, PQ sums and count of the remaining weights in one loop per leaf.  The sums are taken
       unscaled; only if they over- or underflow are they recomputed with the exact power-of-two
       scale 2^-e, 2^e <= max|w| (`lax.cond`: the extra pass runs only then);
    2. the c-th smallest remaining magnitude (`select.kth_smallest`: two histogram passes);
    3. new mask = old mask AND |w| >= threshold.
    """
    one = jnp.ones((), jnp.float32)
    top, sp, sq, d = _pq_sums_f32(rule, w_list, m_list, one)
    bad = ~(jnp.isfinite(sp) & jnp.isfinite(sq)) | (sq < 1e-30)

    def rescaled():
        e = jnp.maximum(jax.lax.bitcast_convert_type(top, jnp.int32) >> 23, 1)  # biased exponent
        inv = jax.lax.bitcast_convert_type((254 - e) << 23, jnp.float32)  # 2^(127 - e), exact
        inv = jnp.where(e >= 254, jnp.float32(2.0 ** -127), inv)  # 2^(127-254) is a denormal
        return tuple(_pq_sums_f32(rule, w_list, m_list, inv)[1:3])

    sp, sq = jax.lax.cond(bad & (d > 0), rescaled, lambda: (sp, sq))
    index, r, c = sap_counts(rule, sp, sq, d.astype(jnp.float32))
    a_list = [jnp.where(y, jnp.abs(x), jnp.inf) for x, y in zip(w_list, m_list)]  # fused into each pass
    thr = jnp.where(c >= d, jnp.inf, kth_smallest(a_list, c))  # c >= d: prune all (only when beta = 1)
    return [y & (jnp.abs(x) >= thr) for x, y in zip(w_list, m_list)], index, d, r, c


def group_sums(rule, w_list, m_list, axis) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(sum a^p, sum a^q, d) pooled over a group (axis=1: per row); the group has at least one leaf."""
    if axis is None:
        scale = max_scale(jnp.stack([jnp.max(masked_abs(x, y), initial=0) for x, y in zip(w_list, m_list)]))
    else:
        scale = max_scale(masked_abs(w_list[0], m_list[0]), axis=axis)
    sums = [power_sums(x, y, rule.p, rule.q, axis, scale) for x, y in zip(w_list, m_list)]
    sp, sq, d = sums[0]
    for sp_k, sq_k, d_k in sums[1:]:
        sp, sq, d = sp + sp_k, sq + sq_k, d + d_k
    return sp, sq, d


@dataclasses.dataclass(frozen=True)
class SAP(_Rule):
    """Sparsity-informed Adaptive Pruning (Algorithm 1): prune by the PQ Index bound.

    p, q: PQ Index norms (0 < p < q).  eta_r >= 0: compression slack.  gamma > 0: scaling.
    beta in [0, 1]: maximum fraction of the remaining weights pruned per step.
    scope: "global" | "layer" | "neuron".  filter(path, leaf) -> bool: which leaves are pruned.
    """

    p: float = 0.5
    q: float = 1.0
    eta_r: float = 0.0
    gamma: float = 1.0
    beta: float = 0.9
    scope: str = "global"
    filter: Callable = default_filter

    def __post_init__(self):
        check_pq(self.p, self.q)
        validation.check_positive(self.eta_r, "eta_r", allow_zero=True)
        validation.check_positive(self.gamma, "gamma")
        validation.check_in_range(self.beta, "beta", 0.0, 1.0)
        validation.check_choice(self.scope, "scope", SCOPES)

    def _count(self, w_list, m_list, axis):
        w_list = [x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(float) for x in w_list]
        sp, sq, d = group_sums(self, w_list, m_list, axis)
        index, r, c = sap_counts(self, sp, sq, d)
        return index, d.astype(jnp.int32), r, c

    def _threshold(self, a_list, c, d, axis):
        if axis is None:
            return kth_smallest(a_list, c)
        return kth_smallest_rows(a_list[0], c)


@dataclasses.dataclass(frozen=True)
class Magnitude(_Rule):
    """Magnitude pruning of a fraction of the remaining weights (the OS / LT baselines, P = 0.2).

    The threshold is the `fraction`-quantile (linear interpolation) of the remaining magnitudes;
    entries strictly below it are pruned.  `count` in the info is the number actually pruned.
    """

    fraction: float = 0.2
    scope: str = "global"
    filter: Callable = default_filter

    def __post_init__(self):
        validation.check_in_range(self.fraction, "fraction", 0.0, 1.0)
        validation.check_choice(self.scope, "scope", SCOPES)

    def _count(self, w_list, m_list, axis):
        d = sum(jnp.sum(y, axis=axis, dtype=jnp.int32) for y in m_list)
        # c is not used to pick entries (the quantile is); it only guards d = 0 below.
        dtype = w_list[0].dtype if jnp.issubdtype(w_list[0].dtype, jnp.inexact) else float
        return jnp.asarray(self.fraction, dtype), d, d, jnp.zeros_like(d)

    def _threshold(self, a_list, c, d, axis):
        pos = self.fraction * (jnp.maximum(d, 1) - 1).astype(a_list[0].dtype)
        lo = jnp.floor(pos).astype(jnp.int32)
        hi = jnp.minimum(lo + 1, jnp.maximum(d - 1, 0))
        frac = pos - lo.astype(pos.dtype)
        if axis is None:
            v_lo, v_hi = kth_smallest(a_list, lo), kth_smallest(a_list, hi)
        else:
            v_lo, v_hi = kth_smallest_rows(a_list[0], lo), kth_smallest_rows(a_list[0], hi)
        thr = v_lo + frac * jnp.where(v_hi > v_lo, v_hi - v_lo, 0)  # inf - inf guard
        return jnp.where(d > 0, thr, -jnp.inf)

    def prune_with_info(self, params: Any, masks: Any) -> PruneInfo:
        info = super().prune_with_info(params, masks)
        _, after = _counts(info.masks, params, self)
        before_d = info.d
        if self.scope == "global":
            return info._replace(r=after[0], count=before_d - after[0])
        return info._replace(r=after, count=[b - a for b, a in zip(before_d, after)])


def _counts(masks, params, rule):
    """Kept counts per group after pruning (global: [total]; layer: per leaf; neuron: per row)."""
    ms = [m for (path, p), m in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree_util.tree_leaves(masks))
          if rule.filter(path, p)]
    if rule.scope == "neuron":
        return None, [jnp.sum(_rows(m), axis=1, dtype=jnp.int32) for m in ms]
    if rule.scope == "layer":
        return None, [jnp.sum(m, dtype=jnp.int32) for m in ms]
    return None, [sum(jnp.sum(m, dtype=jnp.int32) for m in ms)]


def magnitude(fraction: float = 0.2, *, scope: str = "global", filter: Callable = default_filter) -> Magnitude:
    """Magnitude rule removing `fraction` of the remaining weights per call (see `Magnitude`)."""
    return Magnitude(fraction=fraction, scope=scope, filter=filter)
