"""Exact k-th smallest of non-negative float32 magnitudes without sorting.

Non-negative IEEE floats (and +inf) order like their int32 bit patterns, so the c-th smallest
can be found exactly by a radix select on the bits: a histogram of the 16 high bits finds the
bucket holding rank c, a histogram of the 15 low bits of that bucket's entries finds the value.
Both histograms are one in-place scatter-add each, chained over every array of the group (no
concatenated copy, no per-array histogram to sum), and entries that would all hit one bin (+inf,
or everything outside the chosen bucket) are spread over spare bins, because repeated adds to one
address serialise.  A full `jnp.sort` of ResNet18's 11 M magnitudes costs seconds on a CPU; this
costs two passes.  Other dtypes fall back to a sort.

Per row (the neuron scope), `kth_smallest_rows` (from `jsparse.core.order`) bisects the bit patterns.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jsparse.core.order import kth_smallest_rows

__all__ = ["kth_smallest", "kth_smallest_rows", "high_histogram", "select_from_histogram", "INF_BUCKET"]

_HI = 1 << 16  # buckets of the 16 high bits (sign bit is 0 for magnitudes)
_LO = 1 << 15  # values of the 15 low bits inside one bucket
_SPARE = 1 << 10  # spare bins of the second histogram (entries outside the chosen bucket)
INF_BUCKET = 0x7F800000 >> 15  # +inf's bucket: every bucket below it holds finite values only


def _bits(v: jax.Array) -> jax.Array:
    return jax.lax.bitcast_convert_type(v.ravel(), jnp.int32)


def _spread(b: jax.Array, n: int) -> jax.Array:
    """Position-based bin offsets 0..n-1: entries that share a bin are spread over n bins, so that
    consecutive scatter-adds do not all wait on one memory location."""
    return jax.lax.iota(jnp.int32, b.size) & (n - 1)


def high_histogram(values: list[jax.Array]) -> jax.Array:
    """(65536,) int32 counts of the 16 high bits over all float32 arrays in `values` (>= 0, +inf ok).

    +inf (pruned entries) is spread over the NaN buckets above INF_BUCKET (inputs hold no NaN):
    every bucket >= INF_BUCKET counts +inf."""
    h = jnp.zeros(_HI, jnp.int32)
    for v in values:  # chained scatters into one buffer: updated in place by XLA
        hi = (_bits(v) >> 15) & (_HI - 1)  # the & keeps any input in bounds
        hi = jnp.where(hi >= INF_BUCKET, INF_BUCKET + _spread(hi, _HI - INF_BUCKET), hi)
        h = h.at[hi].add(1, mode="promise_in_bounds")
    return h


def select_from_histogram(values: list[jax.Array], hist: jax.Array, c: jax.Array) -> jax.Array:
    """The c-th smallest (0-based, clipped to [0, total-1]) of `values`, given `high_histogram(values)`."""
    total = sum(v.size for v in values)
    c = jnp.clip(jnp.asarray(c, jnp.int32), 0, total - 1)
    cum = jnp.cumsum(hist)
    k = jnp.minimum(jnp.sum(cum <= c, dtype=jnp.int32), _HI - 1)
    before = jnp.where(k > 0, cum[jnp.maximum(k - 1, 0)], 0)
    h2 = jnp.zeros(_LO + _SPARE, jnp.int32)
    for v in values:  # entries outside bucket k go to the spare bins (spread: see _spread)
        b = _bits(v)
        h2 = h2.at[jnp.where((b >> 15) == k, b & (_LO - 1), _LO + _spread(b, _SPARE))].add(1, mode="promise_in_bounds")
    j = jnp.minimum(jnp.sum(jnp.cumsum(h2[:_LO]) <= c - before, dtype=jnp.int32), _LO - 1)
    found = jax.lax.bitcast_convert_type((k << 15) | j, jnp.float32)
    return jnp.where(k >= INF_BUCKET, jnp.float32(jnp.inf), found)


def kth_smallest(values: list[jax.Array], c: jax.Array) -> jax.Array:
    """The c-th smallest (0-based) entry over a list of non-negative arrays (+inf allowed, no NaN).

    c is clipped to [0, total-1].  float32: exact radix select (two histogram passes).
    Other dtypes: sort.
    """
    if any(v.dtype != jnp.float32 for v in values):
        total = sum(v.size for v in values)
        c = jnp.clip(jnp.asarray(c, jnp.int32), 0, total - 1)
        return jnp.sort(jnp.concatenate([v.ravel() for v in values]))[c]
    return select_from_histogram(values, high_histogram(values), c)
