"""Non-negative least squares inside jit: min_x ||A x − b||_2 subject to x >= 0.

Lawson–Hanson active-set method (the algorithm behind MATLAB `lsqnonneg` and
`scipy.optimize.nnls`), written with fixed shapes so that it jits and vmaps:

* the passive (free) set P is a boolean mask; the least-squares solve on P uses the masked Gram
  matrix G_P = G ∘ (P Pᵀ) + diag(¬P) with G = AᵀA, so entries outside P come out exactly 0;
* the outer loop adds the index with the largest positive dual w = Aᵀ(b − Ax) (stop when every
  w_j <= tol on the active set); the inner loop keeps x feasible by stepping back to the first
  variable that would turn non-positive and dropping it from P.

Meant for the small systems of PC-KroSBL (18 x 18 coupling matrices): each solve is O(n³) on the
Gram matrix, so the problem's conditioning is squared — fine for κ(A) up to ~1e3 in float32.
`nnls_gram` is the traced core (no validation) used by other modules.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jsparse.core import validation as V
from jsparse.core.linalg import HIGHEST
from jsparse.sbl._common import check_matches

__all__ = ["NNLSResult", "nnls", "nnls_gram"]


class NNLSResult(NamedTuple):
    """x: (n,) solution >= 0; residual_norm: () ||Ax − b|| (0 from `nnls_gram`, which has no A);
    iterations: () int32 outer (add-one-index) iterations; converged: () bool, KKT conditions met."""

    x: jax.Array
    residual_norm: jax.Array
    iterations: jax.Array
    converged: jax.Array


def _solve_passive(gram: jax.Array, atb: jax.Array, passive: jax.Array) -> jax.Array:
    """Unconstrained least squares on the passive set; zero elsewhere."""
    both = passive[:, None] & passive[None, :]
    g = jnp.where(both, gram, 0) + jnp.diag((~passive).astype(gram.dtype))
    s = jnp.linalg.solve(g, jnp.where(passive, atb, 0))
    return jnp.where(passive, s, 0)


def _lawson_hanson(gram, atb, tol, max_iters):
    """(x, passive, iterations, converged) of the active-set iteration (no derivative)."""
    n = atb.shape[0]
    dtype = atb.dtype
    tol = jnp.asarray(tol, dtype)

    def inner(carry):
        x, passive, feasible, k = carry
        s = _solve_passive(gram, atb, passive)
        ok = jnp.all(jnp.where(passive, s > 0, True))
        bad = passive & (s <= 0)
        ratio = jnp.where(bad, x / jnp.where(bad, x - s, 1), jnp.inf)
        alpha = jnp.min(ratio)
        stepped = x + alpha * (s - x)
        # Drop the blocking variables (ratio == alpha) and anything that reached 0.
        keep = passive & ~(bad & (ratio <= alpha)) & (stepped > 0)
        x_new = jnp.where(ok, s, jnp.where(keep, stepped, 0))
        p_new = jnp.where(ok, passive, keep)
        return x_new, p_new, ok, k + 1

    def outer_cond(carry):
        _, _, done, it = carry
        return (~done) & (it < max_iters)

    def outer(carry):
        x, passive, _, it = carry
        w = atb - jnp.matmul(gram, x, precision=HIGHEST)
        cand = (~passive) & (w > tol)
        done = ~jnp.any(cand)
        j = jnp.argmax(jnp.where(cand, w, -jnp.inf))
        passive = jnp.where(done, passive, passive.at[j].set(True))
        x, passive, _, _ = lax.while_loop(
            lambda c: (~c[2]) & (c[3] <= n),
            inner,
            (x, passive, done, jnp.asarray(0, jnp.int32)),
        )
        return x, passive, done, it + jnp.where(done, 0, 1).astype(jnp.int32)

    init = (jnp.zeros((n,), dtype), jnp.zeros((n,), bool), jnp.asarray(False), jnp.asarray(0, jnp.int32))
    x, passive, done, it = lax.while_loop(outer_cond, outer, init)
    # The last outer pass may have spent the budget without re-checking the KKT conditions.
    w = atb - jnp.matmul(gram, x, precision=HIGHEST)
    done = done | ~jnp.any((~passive) & (w > tol))
    return jnp.maximum(x, 0), it, done


@partial(jax.custom_jvp, nondiff_argnums=(3,))
def _nnls_core(gram, atb, tol, max_iters):
    return _lawson_hanson(gram, atb, tol, max_iters)


@_nnls_core.defjvp
def _nnls_core_jvp(max_iters, primals, tangents):
    # On the (locally constant) set P = {x > 0}: G_PP x_P = c_P, so dx_P = G_PP^{-1}(dc − dG x)_P.
    gram, atb, tol = primals
    dgram, datb, _ = tangents
    x, it, done = _nnls_core(gram, atb, tol, max_iters)
    passive = x > 0
    dx = _solve_passive(gram, datb - jnp.matmul(dgram, x, precision=HIGHEST), passive)
    zeros = lambda v: np.zeros(np.shape(v), dtype=jax.dtypes.float0)  # noqa: E731
    return (x, it, done), (dx, zeros(it), zeros(done))


def nnls_gram(gram: jax.Array, atb: jax.Array, *, tol: jax.Array | float, max_iters: int) -> NNLSResult:
    """Lawson–Hanson NNLS from the normal equations: min_x xᵀGx/2 − xᵀ(Aᵀb), x >= 0.

    Args:
      gram: (n, n) G = AᵀA (symmetric positive semi-definite, real).
      atb: (n,) Aᵀb.
      tol: dual-feasibility tolerance: stop when (Aᵀb − Gx)_j <= tol for every j outside P.
      max_iters: cap on outer iterations (static; scipy's default is 3n). The inner loop is capped
        at n + 1 steps per outer iteration (each step removes at least one index from P).

    Differentiable (forward and reverse mode) almost everywhere: the derivative holds the
    active set fixed (implicit differentiation of the passive-set normal equations).
    """
    x, it, done = _nnls_core(gram, atb, jnp.asarray(tol, atb.dtype), max_iters)
    return NNLSResult(x, jnp.zeros((), atb.dtype), it, done)


def default_tol(a: jax.Array, b: jax.Array) -> jax.Array:
    """10 max(m, n) eps ||A||_F ||b||: the dual w = Aᵀ(b − Ax) is measured on that scale."""
    m, n = a.shape
    eps = jnp.finfo(a.dtype).eps
    return 10 * max(m, n) * eps * jnp.linalg.norm(a) * jnp.linalg.norm(b)


def nnls(a: jax.Array, b: jax.Array, *, max_iters: int | None = None, tol: float | None = None) -> NNLSResult:
    """Non-negative least squares, jit- and vmap-able (Lawson–Hanson active set).

    Args:
      a: (m, n) real matrix.
      b: (m,) real right-hand side of a's dtype.
      max_iters: outer-iteration cap (default 3n, as scipy).
      tol: dual-feasibility tolerance (default `default_tol(a, b)`).

    Returns:
      NNLSResult(x (n,), residual_norm ||Ax − b||, iterations, converged).
    """
    a = V.check_array(a, "a", ndim=2, dtype="float")
    b = V.check_array(b, "b", ndim=1, dtype="float")
    check_matches(b, "b", a, "a")
    n = a.shape[1]
    max_iters = 3 * n if max_iters is None else V.check_int(max_iters, "max_iters", minimum=1)
    if tol is not None:
        V.check_positive(tol, "tol", allow_zero=True)
    tol_arg = jnp.asarray(-1 if tol is None else tol, a.dtype)
    return _nnls_jit(a, b, tol_arg, max_iters=max_iters)


@partial(jax.jit, static_argnames=("max_iters",))
def _nnls_jit(a, b, tol, *, max_iters: int) -> NNLSResult:
    """The traced part of `nnls` (tol < 0 selects `default_tol`)."""
    gram = jnp.matmul(a.T, a, precision=HIGHEST)
    atb = jnp.matmul(a.T, b, precision=HIGHEST)
    t = jnp.where(tol < 0, default_tol(a, b), tol)
    res = nnls_gram(gram, atb, tol=t, max_iters=max_iters)
    rnorm = jnp.linalg.norm(jnp.matmul(a, res.x, precision=HIGHEST) - b)
    return res._replace(residual_norm=rnorm)
