"""Metrics shared by the families (all jit-able except `hungarian_match`).

Conventions:
  * NMSE = ||x_hat - x||^2 / ||x||^2 (a ratio per trial; average ratios across trials).
  * Support = {n : |x_n| > rel_threshold * max |x|}; support recovery is the Jaccard index
    |S_hat ∩ S| / |S_hat ∪ S| (1 when both supports are empty).
  * SAD = the angle between two spectra, in radians (computed as 2 atan2(|u - v|, |u + v|) of the
    unit spectra, accurate for tiny angles too).
  * RMSE over all entries.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jsparse.core.validation import check_array

__all__ = [
    "nmse",
    "nmse_db",
    "to_db",
    "support",
    "support_jaccard",
    "sad",
    "sad_matrix",
    "rmse",
    "Matching",
    "hungarian_match",
]

_TINY = 1e-30


def _sq_norm(x: jax.Array, axis=None) -> jax.Array:
    return jnp.sum(jnp.abs(x) ** 2, axis=axis)


def nmse(estimate: jax.Array, truth: jax.Array, axis=None) -> jax.Array:
    """||estimate - truth||^2 / ||truth||^2 (linear; reduced over `axis`, all axes by default)."""
    err = _sq_norm(estimate - truth, axis)
    ref = _sq_norm(truth, axis)
    return err / jnp.maximum(ref, _TINY)


def to_db(ratio: jax.Array) -> jax.Array:
    """10 log10(ratio)."""
    return 10.0 * jnp.log10(ratio)


def nmse_db(estimate: jax.Array, truth: jax.Array, axis=None) -> jax.Array:
    """NMSE in decibels."""
    return to_db(nmse(estimate, truth, axis))


def support(x: jax.Array, rel_threshold: float = 1e-3) -> jax.Array:
    """Boolean mask of entries with |x_n| > rel_threshold * max|x| (all False for x = 0)."""
    mag = jnp.abs(x)
    return mag > rel_threshold * jnp.max(mag) if x.size else mag > 0


def support_jaccard(estimate: jax.Array, truth: jax.Array, rel_threshold: float = 1e-3) -> jax.Array:
    """|S_hat ∩ S| / |S_hat ∪ S| with supports from `support` (1.0 if both are empty)."""
    s_hat = support(estimate, rel_threshold)
    s = support(truth, rel_threshold)
    inter = jnp.sum(s_hat & s)
    union = jnp.sum(s_hat | s)
    return jnp.where(union > 0, inter / jnp.maximum(union, 1), 1.0)


def _as_real(x: ArrayLike, name: str) -> jax.Array:
    x = check_array(x, name, ndim=2, dtype="numeric", finite=False)
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one band (row), got shape {x.shape}")
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _unit_columns(x: jax.Array) -> jax.Array:
    norm = jnp.sqrt(jnp.sum(x * x, axis=0, keepdims=True))
    return x / jnp.maximum(norm, jnp.asarray(_TINY, x.dtype))


@jax.jit
def _angles(estimate: jax.Array, truth: jax.Array) -> jax.Array:
    dtype = jnp.result_type(estimate.dtype, truth.dtype)
    u = _unit_columns(estimate.astype(dtype))[:, :, None]
    v = _unit_columns(truth.astype(dtype))[:, None, :]
    diff = jnp.sqrt(jnp.sum((u - v) ** 2, axis=0))
    summ = jnp.sqrt(jnp.sum((u + v) ** 2, axis=0))
    return 2.0 * jnp.arctan2(diff, summ)


def sad_matrix(estimate: ArrayLike, truth: ArrayLike) -> jax.Array:
    """Spectral angles (radians) between all columns: out[i, j] = angle(estimate[:, i], truth[:, j]).

    The angle is 2 atan2(||u - v||, ||u + v||) with u, v the unit columns: unlike arccos of the
    cosine, it keeps full relative precision for tiny angles (arccos returns 0 below ~3e-4 rad in
    float32) and near pi. A zero column is at pi/2 from everything.

    Args:
      estimate: (bands, R1); truth: (bands, R2) (real; NaN propagates to the angles it touches).
    Returns:
      (R1, R2) array of angles in [0, pi].
    """
    u, v = _as_real(estimate, "estimate"), _as_real(truth, "truth")
    if u.shape[0] != v.shape[0]:
        raise ValueError(f"truth: expected {u.shape[0]} rows (the bands of estimate), got shape {v.shape}")
    return _angles(u, v)


def sad(estimate: ArrayLike, truth: ArrayLike) -> jax.Array:
    """Spectral angle (radians) between matched columns: (bands, R) x (bands, R) -> (R,)."""
    angles = sad_matrix(estimate, truth)
    if np.shape(estimate) != np.shape(truth):
        raise ValueError(f"truth: shape {np.shape(truth)} differs from estimate's {np.shape(estimate)}")
    return jnp.diagonal(angles)


def rmse(estimate: jax.Array, truth: jax.Array, axis=None) -> jax.Array:
    """sqrt(mean |estimate - truth|^2) over `axis` (all axes by default)."""
    return jnp.sqrt(jnp.mean(jnp.abs(estimate - truth) ** 2, axis=axis))


class Matching(NamedTuple):
    """Result of `hungarian_match`: estimate column `rows[i]` is matched to truth column `cols[i]`."""

    rows: np.ndarray
    cols: np.ndarray
    cost: float


def hungarian_match(cost: np.ndarray | jax.Array, *, maximize: bool = False) -> Matching:
    """Optimal one-to-one assignment (scipy's linear_sum_assignment; host-side, not jit-able).

    Args:
      cost: (R1, R2) cost matrix, e.g. `sad_matrix(estimate, truth)`.
      maximize: maximise the total instead (e.g. for cosine similarities).
    Returns:
      Matching with `rows`/`cols` index arrays of length min(R1, R2), sorted by truth column.
    """
    from scipy.optimize import linear_sum_assignment

    c = np.asarray(cost)
    if c.ndim != 2:
        raise ValueError(f"cost: expected a 2-D matrix, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("cost: contains NaN or Inf values")
    rows, cols = linear_sum_assignment(c, maximize=maximize)
    order = np.argsort(cols)
    rows, cols = rows[order], cols[order]
    return Matching(rows, cols, float(c[rows, cols].sum()))
