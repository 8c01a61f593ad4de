"""Metrics shared by the families (all jit-able except `hungarian_match`).

Conventions:
  * NMSE = ||x_hat - x||^2 / ||x||^2 (a ratio per trial; average ratios across trials).
  * Support = {n : |x_n| > rel_threshold * max |x|}; support recovery is the Jaccard index
    |S_hat ∩ S| / |S_hat ∪ S| (1 when both supports are empty).
  * SAD = arccos of the cosine between two spectra, in radians.
  * RMSE over all entries.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jsparse.core.linalg import HIGHEST

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


def sad_matrix(estimate: ArrayLike, truth: ArrayLike) -> jax.Array:
    """Spectral angles (radians) between all columns: out[i, j] = angle(estimate[:, i], truth[:, j]).

    Args:
      estimate: (bands, R1); truth: (bands, R2).
    Returns:
      (R1, R2) array of angles in [0, pi].
    """
    estimate, truth = jnp.asarray(estimate), jnp.asarray(truth)
    num = jnp.matmul(estimate.T, truth, precision=HIGHEST)
    den = jnp.linalg.norm(estimate, axis=0)[:, None] * jnp.linalg.norm(truth, axis=0)[None, :]
    cos = jnp.clip(num / jnp.maximum(den, _TINY), -1.0, 1.0)
    return jnp.arccos(cos)


def sad(estimate: ArrayLike, truth: ArrayLike) -> jax.Array:
    """Spectral angle (radians) between matched columns: (bands, R) x (bands, R) -> (R,)."""
    return jnp.diagonal(sad_matrix(estimate, truth))


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
