"""Shared pieces of the unmixing family: the result type, input validation, simplex projection.

Shapes: Y is (bands L, pixels N); endmembers M are (L, R); abundances A are (R, N).
Reflectances are unitless (the loaders scale them to roughly [0, 1]).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jsparse.core.linalg import HIGHEST
from jsparse.core.validation import check_array, check_int

__all__ = ["UnmixingResult", "check_image", "check_num_endmembers", "project_simplex", "mm", "sparsity_lambda"]


class UnmixingResult(NamedTuple):
    """Result of every unmixing method (batched leading axis under vmap).

    Attributes:
      endmembers: (L, R) non-negative endmember spectra.
      abundances: (R, N) non-negative abundances; each column sums to one.
      guidance: (N,) per-pixel sparsity weights h (RRLbS's learned map; ones for methods with
        uniform sparsity, zeros for methods without a sparsity term).
      objective: (max_iters,) objective after each iteration; NaN after the last one taken (None from
        a solver object's `result` for a state stepped by hand).
      iterations: int32 number of iterations taken.
      converged: bool, the relative objective change fell below `tol`.
    """

    endmembers: jax.Array
    abundances: jax.Array
    guidance: jax.Array
    objective: jax.Array | None
    iterations: jax.Array
    converged: jax.Array


def mm(a: jax.Array, b: jax.Array) -> jax.Array:
    """Matrix product at full precision (TPU/GPU default precision would truncate to bf16/tf32)."""
    return jnp.matmul(a, b, precision=HIGHEST)


def check_image(Y, name: str = "Y", *, clip_negative: bool = False) -> jax.Array:
    """Validate a (bands, pixels) real floating image; negative values raise unless clipped."""
    Y = check_array(
        Y,
        name,
        ndim=2,
        dtype="float",
        nonnegative=not clip_negative,
        nonnegative_hint="reflectances must be >= 0; pass clip_negative=True to clip them to 0",
    )
    if Y.shape[0] < 3 or Y.shape[1] < 2:
        raise ValueError(f"{name}: expected at least 3 bands and 2 pixels, got shape {Y.shape}")
    if clip_negative:
        Y = jnp.maximum(Y, 0)
    return Y


def check_num_endmembers(num_endmembers, bands: int, name: str = "num_endmembers") -> int:
    """R must satisfy 2 <= R < bands."""
    return check_int(num_endmembers, name, minimum=2, maximum=bands - 1)


def project_simplex(v: jax.Array, total: float | jax.Array = 1.0, axis: int = 0) -> jax.Array:
    """Euclidean projection of each slice of `v` along `axis` onto {x >= 0, sum x = total}.

    Sort-based (Duchi et al. 2008): O(n log n) per slice, jit- and vmap-friendly.
    """
    v = jnp.moveaxis(v, axis, -1)
    n = v.shape[-1]
    u = jnp.flip(jnp.sort(v, axis=-1), axis=-1)
    css = jnp.cumsum(u, axis=-1) - jnp.asarray(total, v.dtype)
    ks = jnp.arange(1, n + 1, dtype=v.dtype).reshape((1,) * (v.ndim - 1) + (n,))
    cond = u - css / ks > 0
    rho = jnp.sum(cond, axis=-1, keepdims=True)  # number of positive entries (>= 1)
    theta = jnp.take_along_axis(css, rho - 1, axis=-1) / rho.astype(v.dtype)
    return jnp.moveaxis(jnp.maximum(v - theta, 0), -1, axis)


def sparsity_lambda(Y: jax.Array) -> jax.Array:
    """The L1/2-NMF sparsity heuristic (Qian et al. 2011):

        lambda_e = (1/sqrt(L)) sum_l (sqrt(N) - ||y^l||_1/||y^l||_2) / (sqrt(N) - 1)

    over the channels y^l (rows) of Y. Scalar of Y's dtype, jit-able.
    """
    L, N = Y.shape
    l1 = jnp.sum(jnp.abs(Y), axis=1)
    l2 = jnp.sqrt(jnp.sum(Y * Y, axis=1))
    sq = jnp.sqrt(jnp.asarray(N, Y.dtype))
    ratio = l1 / jnp.maximum(l2, jnp.finfo(Y.dtype).tiny)
    return jnp.sum((sq - ratio) / (sq - 1)) / jnp.sqrt(jnp.asarray(L, Y.dtype))
