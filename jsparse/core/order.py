"""Exact order statistics of non-negative floats without sorting.

Non-negative IEEE floats (and +inf) order like their integer bit patterns, so a k-th order
statistic is the answer of a bisection over bit patterns: each step is one counting pass over the
data (32 or 64 passes in all) instead of a sort or a large `top_k`, which on a CPU take seconds at
millions of entries. Used by the pruning family (per-neuron thresholds) and the SAE family
(BatchTopK thresholds).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["bisect_bit_patterns", "kth_largest", "kth_smallest_rows"]


def bisect_bit_patterns(ok: Callable[[jax.Array], jax.Array], lo: jax.Array, hi: jax.Array, passes: int) -> jax.Array:
    """The largest integer pattern v in [lo, hi) with ok(v) True, for a predicate that is True up to
    some point and False after it (elementwise over lo/hi's shape). `passes` bisection steps."""

    def body(_, lohi):
        lo_, hi_ = lohi
        mid = lo_ + (hi_ - lo_) // 2
        good = ok(mid)
        return jnp.where(good, mid, lo_), jnp.where(good, hi_, mid)

    lo, _ = jax.lax.fori_loop(0, passes, body, (lo, hi))
    return lo


def kth_largest(r: jax.Array, k: int) -> jax.Array:
    """Exact k-th largest entry (k >= 1) of a non-negative float array of any shape.

    float32: 32 counting passes over the int32 patterns; float64: 64 over the int64 patterns.
    """
    itype = jnp.int64 if r.dtype == jnp.float64 else jnp.int32
    bits = jax.lax.bitcast_convert_type(r, itype)
    nbits = 64 if itype == jnp.int64 else 32
    lo = bisect_bit_patterns(lambda v: jnp.sum(bits >= v) >= k, jnp.zeros((), itype), jnp.max(bits) + 1, nbits)
    return jax.lax.bitcast_convert_type(lo, r.dtype)


def kth_smallest_rows(a: jax.Array, c: jax.Array) -> jax.Array:
    """Per row of a (rows, n) non-negative array (+inf allowed): the c[i]-th smallest (0-based).

    float32: exact bisection on the int32 bit patterns (31 counting passes, no sort): the answer
    is the largest pattern v with #{a_i < v} <= c. Other dtypes: sort.
    """
    n = a.shape[1]
    c = jnp.clip(jnp.asarray(c, jnp.int32), 0, n - 1)
    if a.dtype != jnp.float32:
        return jnp.take_along_axis(jnp.sort(a, axis=1), c[:, None], axis=1)[:, 0]
    bits = jax.lax.bitcast_convert_type(a, jnp.int32)
    lo = jnp.zeros(a.shape[0], jnp.int32)
    hi = jnp.full(a.shape[0], 0x7F800001, jnp.int32)  # above +inf: every entry counts
    ok = lambda mid: jnp.sum(bits < mid[:, None], axis=1, dtype=jnp.int32) <= c  # noqa: E731
    return jax.lax.bitcast_convert_type(bisect_bit_patterns(ok, lo, hi, 31), jnp.float32)
