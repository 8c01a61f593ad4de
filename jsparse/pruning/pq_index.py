"""The PQ Index (PQI) of Diao et al. (ICLR 2023), a norm-ratio sparsity measure, and its bound r.

For 0 < p < q and a vector w with d entries (the unmasked ones):

    I_{p,q}(w) = 1 - d^{1/q - 1/p} ||w||_p / ||w||_q = 1 - M_p(w) / M_q(w),

with the power mean M_r(w) = ((1/d) sum_i |w_i|^r)^{1/r}.  0 <= I <= 1 - d^{1/q-1/p}; larger
means sparser.  We compute the power means of |w| / max|w| (scale invariance makes this exact),
so float32 sums neither overflow nor underflow, and a single non-zero entry gives exactly the
maximum.  Guards as in the reference code: I = 0 when d = 0 or w is all zero, and rounding
negatives are clipped to 0.  Gradients: |w|^p with p < 1 has an infinite slope at 0; we use the
subgradient 0 there (entries that are exactly 0 get gradient 0), so `jax.grad` never gives NaN.

Scopes: an array (one index), a pytree (global: all selected leaves pooled), per layer (one
index per leaf), per neuron (one index per output unit; in Flax the output axis is the LAST
axis of Dense (in, out) and Conv (kh, kw, in, out) kernels, so we reduce all other axes).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jsparse.core import validation

__all__ = [
    "pq_index",
    "pq_index_per_layer",
    "pq_index_per_neuron",
    "retained_bound",
    "check_pq",
    "default_filter",
    # Building blocks of the index, shared with the pruning rules (grouped sums, one scale):
    "safe_pow",
    "power_sums",
    "index_from_sums",
    "masked_abs",
    "max_scale",
]

Filter = Callable[[Any, jax.Array], bool]


def default_filter(path: Any, leaf: Any) -> bool:
    """The paper's rule: prune (and measure) tensors with ndim > 1 — kernels, not biases/BN."""
    del path
    return jnp.ndim(leaf) > 1


def check_pq(p: Any, q: Any) -> None:
    """Raise ValueError unless 0 < p < q (names the offending argument)."""
    validation.check_positive(p, "p")
    validation.check_positive(q, "q")
    if float(p) >= float(q):
        raise ValueError(f"p: expected p < q, got p={p!r}, q={q!r}")


def safe_pow(a: jax.Array, e: float) -> jax.Array:
    """a**e with cheap special cases for the paper's exponents (pow is exp(e log a) otherwise)."""
    if e == 0.5:
        return jnp.sqrt(a)
    if e == 1.0:
        return a
    if e == 2.0:
        return a * a
    return a**e


def power_sums(w: jax.Array, mask: jax.Array | None, p: float, q: float, axis,
               scale: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(sum a^p, sum a^q, d) over `axis` with a = |w| / scale, masked entries excluded."""
    a = jnp.abs(w)
    if mask is not None:
        a = jnp.where(mask, a, jnp.zeros((), a.dtype))
    a = a / scale
    nz = a > 0
    safe = jnp.where(nz, a, jnp.ones((), a.dtype))  # avoids 0**p (inf slope) in the backward pass
    sp = jnp.sum(jnp.where(nz, safe_pow(safe, p), 0), axis=axis)
    sq = jnp.sum(jnp.where(nz, safe_pow(safe, q), 0), axis=axis)
    d = jnp.sum(jnp.ones_like(a) if mask is None else mask.astype(a.dtype), axis=axis)
    return sp, sq, d


def index_from_sums(sp, sq, d, p: float, q: float):
    """I = 1 - M_p / M_q with guards (d = 0 or all-zero -> 0; small negatives -> 0)."""
    ok = (d > 0) & (sq > 0)
    one = jnp.ones((), sp.dtype)
    d_s = jnp.where(ok, d, one)
    mp = (jnp.where(ok, sp, one) / d_s) ** (1.0 / p)
    mq = (jnp.where(ok, sq, one) / d_s) ** (1.0 / q)
    return jnp.where(ok, jnp.maximum(1.0 - mp / mq, 0.0), jnp.zeros((), sp.dtype))


def _float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.result_type(float))


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic, float, int))


def masked_abs(w: jax.Array, mask: jax.Array | None) -> jax.Array:
    """|w| with masked-out entries set to 0."""
    a = jnp.abs(w)
    return a if mask is None else jnp.where(mask, a, jnp.zeros((), a.dtype))


def max_scale(a: jax.Array, axis=None) -> jax.Array:
    """max a over `axis` (kept dims), 1 where it is 0: the scale the power sums divide by."""
    m = jnp.max(a, axis=axis, keepdims=axis is not None) if a.size else jnp.zeros((), a.dtype)
    # stop_gradient: I is scale invariant, so d I / d scale = 0 exactly; this just avoids noise.
    return jax.lax.stop_gradient(jnp.where(m > 0, m, jnp.ones((), a.dtype)))


def _selected(tree: Any, filter: Filter | None) -> list[tuple[Any, jax.Array]]:
    flat = jax.tree_util.tree_leaves_with_path(tree)
    return [(path, leaf) for path, leaf in flat if filter is None or filter(path, leaf)]


def _check_mask(mask: Any, w: Any, is_tree: bool) -> None:
    if is_tree:
        validation.check_tree(w, "w")
    if mask is None:
        return
    if is_tree:
        validation.check_same_tree(mask, w, "mask", "w")
        validation.check_tree(mask, "mask", boolean=True)
    else:
        validation.check_bool_mask(mask, "mask", shape=jnp.shape(w))


def pq_index(w: Any, *, p: float = 0.5, q: float = 1.0, mask: Any = None, filter: Filter | None = None):
    """PQ Index of an array, or of a pytree pooled globally (all selected leaves as one vector).

    Args:
      w: array of any shape, or a pytree of arrays.
      p, q: 0 < p < q.
      mask: optional boolean array/pytree of w's structure (dtype bool: a float or int mask is
        refused); False entries are excluded (d counts the True entries only).
      filter: for pytrees, `filter(path, leaf) -> bool` picks the pooled leaves (default: all;
        pass `default_filter` for the paper's ndim > 1 rule).
    Returns: a scalar of w's float dtype.
    """
    check_pq(p, q)
    if _is_array(w):
        w = _float(validation.check_array(w, "w", dtype="numeric"))
        _check_mask(mask, w, is_tree=False)
        sp, sq, d = power_sums(w, mask, p, q, None, max_scale(masked_abs(w, mask)))
        return index_from_sums(sp, sq, d, p, q)
    _check_mask(mask, w, is_tree=True)
    leaves = _selected(w, filter)
    if not leaves:
        raise ValueError("w: no leaves selected (empty pytree or filter rejects every leaf)")
    mleaves = dict(_selected(mask, None)) if mask is not None else {}
    items = [(_float(leaf), mleaves.get(path)) for path, leaf in leaves]
    dtype = np.result_type(*(x.dtype for x, _ in items))  # pooled leaves of mixed precision: the widest
    items = [(x.astype(dtype), m) for x, m in items]
    scale = max_scale(jnp.stack([jnp.max(masked_abs(x, m), initial=0) for x, m in items]))
    sums = [power_sums(x, m, p, q, None, scale) for x, m in items]
    sp, sq, d = (sum(s[i] for s in sums) for i in range(3))
    return index_from_sums(sp, sq, d, p, q)


def pq_index_per_layer(w: Any, *, p: float = 0.5, q: float = 1.0, mask: Any = None, filter: Filter | None = None):
    """One PQ Index per leaf: a pytree like `w` with scalar leaves (None for unselected leaves)."""
    check_pq(p, q)
    _check_mask(mask, w, is_tree=True)

    def one(path, leaf, m=None):
        if filter is not None and not filter(path, leaf):
            return None
        x = _float(leaf)
        sp, sq, d = power_sums(x, m, p, q, None, max_scale(masked_abs(x, m)))
        return index_from_sums(sp, sq, d, p, q)

    if mask is None:
        return jax.tree_util.tree_map_with_path(one, w)
    return jax.tree_util.tree_map_with_path(one, w, mask)


def pq_index_per_neuron(w: jax.Array, *, p: float = 0.5, q: float = 1.0, mask: jax.Array | None = None):
    """One PQ Index per output unit of a Flax kernel: reduces every axis but the last.

    w: (..., out) — Dense (in, out) or Conv (kh, kw, in, out).  Returns (out,).
    """
    check_pq(p, q)
    w = _float(validation.check_array(w, "w", dtype="numeric"))
    if w.ndim < 1:
        raise ValueError(f"w: expected at least 1 dimension, got shape {w.shape}")
    _check_mask(mask, w, is_tree=False)
    axes = tuple(range(w.ndim - 1))
    scale = max_scale(masked_abs(w, mask), axis=axes)
    sp, sq, d = power_sums(w, mask, p, q, axes, scale)
    return index_from_sums(sp, sq, d, p, q)


def retained_bound(index: Any, d: Any, *, p: float = 0.5, q: float = 1.0, eta_r: float = 0.0):
    """Theorem 2's lower bound r on the retained count (real-valued; SAP rounds it up).

    r = d (1 + eta_r)^{-q/(q-p)} (1 - I)^{qp/(q-p)}.  With eta_r = 0 it lower-bounds the number of
    non-zeros of w; in general any r' whose top-r' entries hold all but a fraction eta_r of
    sum |w|^p (tail <= eta_r * head) satisfies r' >= r.
    """
    check_pq(p, q)
    validation.check_positive(eta_r, "eta_r", allow_zero=True)
    index = _float(index)
    d = jnp.asarray(d, index.dtype)
    return d * (1.0 + eta_r) ** (-q / (q - p)) * (1.0 - index) ** (q * p / (q - p))
