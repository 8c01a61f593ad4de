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

The k-th smallest of float32 magnitudes is found exactly by a two-pass radix histogram of the
IEEE bit patterns (non-negative floats sort like their int32 bits), which avoids a full sort of
millions of weights; per neuron (row) it is found by bisection on the bit patterns; other
dtypes sort.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jsparse.core import validation
from jsparse.pruning.pq_index import _from_sums, _masked_abs, _max_scale, _sums, check_pq, default_filter

__all__ = ["SAP", "Magnitude", "magnitude", "PruneInfo", "init_masks", "apply_masks", "remaining", "kth_smallest",
           "kth_smallest_rows"]

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


def remaining(masks: Any, params: Any, filter: Callable = default_filter) -> tuple[jax.Array, list]:
    """(global remaining fraction, [per pruned-leaf fraction]) over the leaves `filter` selects."""
    ms = [m for (path, p), m in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree_util.tree_leaves(masks))
          if filter(path, p)]
    kept = sum(jnp.sum(m) for m in ms)
    total = sum(m.size for m in ms)
    return kept / max(total, 1), [jnp.mean(m) for m in ms]


def kth_smallest(values: list[jax.Array], c: jax.Array) -> jax.Array:
    """The c-th smallest (0-based) entry over a list of non-negative arrays (+inf allowed).

    c is clipped to [0, total-1].  float32: exact two-pass radix histogram on the bit pattern
    (16 high bits, then the 15 low bits inside the chosen bucket).  Other dtypes: sort.
    """
    total = sum(v.size for v in values)
    c = jnp.clip(jnp.asarray(c, jnp.int32), 0, total - 1)
    if values[0].dtype != jnp.float32:
        return jnp.sort(jnp.concatenate([v.ravel() for v in values]))[c]
    bits = [jax.lax.bitcast_convert_type(v.ravel(), jnp.int32) for v in values]
    hist1 = sum(jnp.bincount(b >> 15, length=1 << 16) for b in bits)
    cum1 = jnp.cumsum(hist1)
    k = jnp.minimum(jnp.sum(cum1 <= c), (1 << 16) - 1).astype(jnp.int32)
    before = jnp.where(k > 0, cum1[jnp.maximum(k - 1, 0)], 0)
    hist2 = sum(jnp.bincount(jnp.where((b >> 15) == k, b & 0x7FFF, 1 << 15), length=(1 << 15) + 1) for b in bits)
    j = jnp.minimum(jnp.sum(jnp.cumsum(hist2[: 1 << 15]) <= c - before), (1 << 15) - 1).astype(jnp.int32)
    return jax.lax.bitcast_convert_type((k << 15) | j, jnp.float32)


def kth_smallest_rows(a: jax.Array, c: jax.Array) -> jax.Array:
    """Per row of a (rows, n) non-negative array (+inf allowed): the c[i]-th smallest (0-based).

    float32: exact bisection on the int32 bit patterns (31 counting passes, no sort): the answer
    is the largest pattern v with #{a_i < v} <= c.  Other dtypes: sort.
    """
    n = a.shape[1]
    c = jnp.clip(jnp.asarray(c, jnp.int32), 0, n - 1)
    if a.dtype != jnp.float32:
        return jnp.take_along_axis(jnp.sort(a, axis=1), c[:, None], axis=1)[:, 0]
    bits = jax.lax.bitcast_convert_type(a, jnp.int32)

    def body(_, lohi):
        lo, hi = lohi
        mid = lo + (hi - lo) // 2
        ok = jnp.sum(bits < mid[:, None], axis=1, dtype=jnp.int32) <= c
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo = jnp.zeros(a.shape[0], jnp.int32)
    hi = jnp.full(a.shape[0], 0x7F800001, jnp.int32)  # above +inf: every entry counts
    lo, _ = jax.lax.fori_loop(0, 31, body, (lo, hi))
    return jax.lax.bitcast_convert_type(lo, jnp.float32)


def _validate(params: Any, masks: Any) -> None:
    validation.check_same_tree(masks, params, "masks", "params")
    for m in jax.tree_util.tree_leaves(masks):
        if jnp.asarray(m).dtype != jnp.bool_:
            raise ValueError(f"masks: expected boolean leaves, got {jnp.asarray(m).dtype}")


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
        return _prune_jit(self, params, masks)

    # Per group (a list of weight arrays; axis=1 when each row is its own group, i.e. neurons):
    def _count(self, w_list, m_list, axis):  # pragma: no cover - abstract
        """-> (index, d remaining, r, c to prune)."""
        raise NotImplementedError

    def _threshold(self, a_list, c, d, axis):  # pragma: no cover - abstract
        """Threshold below which remaining entries are pruned (a_list: |w| with +inf at pruned)."""
        raise NotImplementedError


def _prune_impl(rule: _Rule, params: Any, masks: Any) -> PruneInfo:
    flat = jax.tree_util.tree_leaves_with_path(params)
    mleaves, mdef = jax.tree_util.tree_flatten(masks)
    sel = [i for i, (path, p) in enumerate(flat) if rule.filter(path, p)]
    new = list(mleaves)
    if not sel:
        return PruneInfo(masks, [], [], [], [])
    w = [jnp.asarray(flat[i][1]) for i in sel]
    m = [mleaves[i] for i in sel]
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


_prune_jit = jax.jit(_prune_impl, static_argnums=0)


def _group_sums(rule, w_list, m_list, axis):
    """(sum a^p, sum a^q, d) pooled over a group (axis=1: per row)."""
    if axis is None:
        scale = _max_scale(jnp.stack([jnp.max(_masked_abs(x, y), initial=0) for x, y in zip(w_list, m_list)]))
    else:
        scale = _max_scale(_masked_abs(w_list[0], m_list[0]), axis=axis)
    sums = [_sums(x, y, rule.p, rule.q, axis, scale) for x, y in zip(w_list, m_list)]
    return tuple(sum(s[i] for s in sums) for i in range(3))


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
        sp, sq, d = _group_sums(self, w_list, m_list, axis)
        index = _from_sums(sp, sq, d, self.p, self.q)
        bound = d * (1.0 + self.eta_r) ** (-self.q / (self.q - self.p)) * (1.0 - index) ** (
            self.q * self.p / (self.q - self.p))
        r = jnp.ceil(bound)
        # floor(d * clip(gamma (1 - r/d), 0, beta)) written as gamma (d - r): exact when gamma = 1
        # (in floats, d (1 - r/d) can land just below the integer d - r and lose one).
        c = jnp.floor(jnp.clip(self.gamma * (d - r), 0.0, self.beta * d)).astype(jnp.int32)
        return index, d.astype(jnp.int32), r.astype(jnp.int32), c

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
        return jnp.asarray(self.fraction, w_list[0].dtype if jnp.issubdtype(w_list[0].dtype, jnp.inexact) else float), d, d, jnp.zeros_like(d)

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
