"""FCLS: fully constrained least-squares abundances for known endmembers.

Solves, for every pixel n independently (all at once, as one matrix problem)::

    min_A  1/2 ||Y - M A||_F^2   s.t.  A >= 0,  1^T A = 1^T

with accelerated projected gradient (FISTA with gradient restart, O'Donoghue & Candes 2015):
the projection onto the probability simplex is exact and sort-based, so the iteration is a
fixed-shape, jit- and vmap-friendly loop. Only the Gram form is used inside the loop
(G = M^T M, B = M^T Y: R x R and R x N), so an iteration costs O(R^2 N).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jsparse.core import runner
from jsparse.core.validation import check_array, check_int, check_positive
from jsparse.unmixing._common import UnmixingResult, check_image, mm, project_simplex

__all__ = ["FCLSState", "fcls", "fcls_init", "fcls_step", "fcls_objective", "fcls_solve"]


class FCLSState(NamedTuple):
    A: jax.Array  # (R, N) current iterate (feasible)
    Z: jax.Array  # (R, N) extrapolated point
    t: jax.Array  # momentum scalar
    iteration: jax.Array
    converged: jax.Array


def _lipschitz(G):
    # ||G||_F >= lambda_max(G): a safe step without an eigendecomposition (no batched eigh).
    return jnp.sqrt(jnp.sum(G * G)) + jnp.finfo(G.dtype).tiny


def fcls_init(R: int, N: int, dtype) -> FCLSState:
    """Start from the simplex barycentre (feasible)."""
    A = jnp.full((R, N), 1.0 / R, dtype)
    return FCLSState(A, A, jnp.ones((), dtype), jnp.zeros((), jnp.int32), jnp.zeros((), bool))


def fcls_step(state: FCLSState, G, B, yy, tol) -> FCLSState:
    """One FISTA step; args: G = M^T M (R,R), B = M^T Y (R,N), yy = ||Y||^2, tol."""
    del yy
    step = 1.0 / _lipschitz(G)
    grad = mm(G, state.Z) - B
    A_new = project_simplex(state.Z - step * grad, 1.0, axis=0)
    t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * state.t**2))
    # Gradient restart: drop the momentum when it points uphill.
    restart = jnp.sum(grad * (A_new - state.A)) > 0
    beta = jnp.where(restart, 0.0, (state.t - 1.0) / t_new)
    Z_new = A_new + beta * (A_new - state.A)
    t_new = jnp.where(restart, jnp.ones_like(t_new), t_new)
    change = runner.relative_change(A_new, state.A)
    return FCLSState(A_new, Z_new, t_new, state.iteration + 1, change < tol)


def fcls_objective(state: FCLSState, G, B, yy, tol) -> jax.Array:
    """1/2 ||Y - M A||_F^2 via the Gram form (no L x N product)."""
    del tol
    A = state.A
    return 0.5 * (jnp.sum(A * mm(G, A)) - 2.0 * jnp.sum(A * B) + yy)


def _fixed_point(solution, G, B, yy, tol):
    (A,) = solution
    step = 1.0 / _lipschitz(G)
    return (project_simplex(A - step * (mm(G, A) - B), 1.0, axis=0),)


@partial(jax.jit, static_argnames=("max_iters", "adjoint"))
def fcls_solve(Y, M, *, max_iters: int, tol, adjoint: str = "none"):
    """Traced core of `fcls` (no validation): returns (A, RunInfo)."""
    G = mm(M.T, M)
    B = mm(M.T, Y)
    yy = jnp.sum(Y * Y)
    tol = jnp.asarray(tol, Y.dtype)
    state = fcls_init(M.shape[1], Y.shape[1], Y.dtype)
    final, info = runner.run(
        fcls_step,
        state,
        (G, B, yy, tol),
        max_iters=max_iters,
        adjoint=adjoint,
        fixed_point=_fixed_point,
        solution=("A",),
        trace_fn=fcls_objective,
    )
    return final.A, info


def fcls(Y, endmembers, *, max_iters: int = 500, tol: float = 1e-7, adjoint: str = "none",
         clip_negative: bool = False) -> UnmixingResult:
    """Fully constrained (non-negative, sum-to-one) least-squares abundances.

    Args:
      Y: (L, N) image, bands x pixels, non-negative reflectances.
      endmembers: (L, R) known endmember spectra.
      max_iters: iteration budget of the accelerated projected-gradient solver.
      tol: stop when ||A_t - A_{t-1}||_F / ||A_{t-1}||_F < tol.
      adjoint: "none", "unrolled" or "implicit" (fixed point of the projected-gradient map).
      clip_negative: clip negative reflectances to 0 instead of raising.

    Returns:
      UnmixingResult with the given endmembers, (R, N) abundances, zero guidance and the
      objective 1/2 ||Y - M A||_F^2 per iteration.
    """
    Y = check_image(Y, clip_negative=clip_negative)
    M = check_array(endmembers, "endmembers", ndim=2, dtype="float")
    if M.shape[0] != Y.shape[0]:
        raise ValueError(f"endmembers: expected {Y.shape[0]} rows (the bands of Y), got shape {M.shape}")
    if M.shape[1] < 1:
        raise ValueError(f"endmembers: expected at least one column, got shape {M.shape}")
    check_int(max_iters, "max_iters", minimum=1)
    check_positive(tol, "tol", allow_zero=True)
    runner.check_adjoint(adjoint)
    M = M.astype(Y.dtype)
    A, info = fcls_solve(Y, M, max_iters=max_iters, tol=tol, adjoint=adjoint)
    return UnmixingResult(M, A, jnp.zeros((Y.shape[1],), Y.dtype), info.trace, info.iterations, info.converged)
