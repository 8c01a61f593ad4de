"""FCLS: fully constrained least-squares abundances for known endmembers.

Solves, for every pixel n independently (all at once, as one matrix problem)::

    min_A  1/2 ||Y - M A||_F^2   s.t.  A >= 0,  1^T A = 1^T

with accelerated projected gradient (FISTA with gradient restart, O'Donoghue & Candes 2015):
the projection onto the probability simplex is exact and sort-based, so the iteration is a
fixed-shape, jit- and vmap-friendly loop. Only the Gram form is used inside the loop
(G = M^T M, B = M^T Y: R x R and R x N), so an iteration costs O(R^2 N).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from jsparse.core import runner
from jsparse.core.validation import check_array, check_int, check_positive
from jsparse.unmixing._common import UnmixingResult, check_image, mm, project_simplex

__all__ = ["FCLS", "FCLSState", "fcls"]


class FCLSState(NamedTuple):
    """FCLS iterate. A, Z (R, N); t a scalar; G = M^T M (R, R), B = M^T Y (R, N), yy = ||Y||_F^2 from `init`."""

    A: jax.Array  # current iterate (feasible)
    Z: jax.Array  # extrapolated point
    t: jax.Array  # momentum scalar
    G: jax.Array  # Gram matrix of the endmembers
    B: jax.Array  # endmembers' correlations with the pixels
    yy: jax.Array  # squared norm of Y (for the objective)
    iteration: jax.Array  # int32
    converged: jax.Array  # bool


def _lipschitz(G):
    # ||G||_F >= lambda_max(G): a safe step without an eigendecomposition (no batched eigh).
    return jnp.sqrt(jnp.sum(G * G)) + jnp.finfo(G.dtype).tiny


def _projected_gradient(A, G, B):
    return project_simplex(A - (1.0 / _lipschitz(G)) * (mm(G, A) - B), 1.0, axis=0)


class FCLS(struct.PyTreeNode):
    """FCLS abundances by accelerated projected gradient, as a solver object; data are (Y (L, N), M (L, R)).

    The Gram form G = M^T M, B = M^T Y and ||Y||^2 is computed once in `init` and carried in the
    state, so a step costs O(R^2 N); step the state with the same (Y, M) it was initialised with.

    Attributes:
      max_iters: iteration budget (static). tol: stop when ||A_t - A_{t-1}||_F / ||A_{t-1}||_F < tol.
      adjoint: "none", "unrolled", "implicit" or an adjoint value (`jsparse.core.adjoint`); the
        implicit adjoint differentiates the fixed point of the projected-gradient map.

    Example::

        solver = FCLS()
        state = solver.init(Y, M)
        state, _ = jax.lax.scan(lambda s, _: (solver.step(s, Y, M), None), state, None, length=200)
        A = solver.result(state, Y, M).abundances
    """

    max_iters: int = struct.field(pytree_node=False, default=500)
    tol: float = struct.field(pytree_node=False, default=1e-7)
    adjoint: Any = struct.field(pytree_node=False, default="none")
    solution = ("A",)

    def init(self, Y: jax.Array, M: jax.Array) -> FCLSState:
        """Start from the simplex barycentre (feasible)."""
        R, N = M.shape[1], Y.shape[1]
        A = jnp.full((R, N), 1.0 / R, Y.dtype)
        return FCLSState(A, A, jnp.ones((), Y.dtype), mm(M.T, M), mm(M.T, Y), jnp.sum(Y * Y),
                         jnp.zeros((), jnp.int32), jnp.zeros((), bool))

    def step(self, state: FCLSState, Y: jax.Array, M: jax.Array) -> FCLSState:
        """One FISTA step with gradient restart (O'Donoghue & Candes 2015)."""
        del Y, M  # the Gram form in the state
        step = 1.0 / _lipschitz(state.G)
        grad = mm(state.G, state.Z) - state.B
        A_new = project_simplex(state.Z - step * grad, 1.0, axis=0)
        t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * state.t**2))
        # Gradient restart: drop the momentum when it points uphill.
        restart = jnp.sum(grad * (A_new - state.A)) > 0
        beta = jnp.where(restart, 0.0, (state.t - 1.0) / t_new)
        Z_new = A_new + beta * (A_new - state.A)
        t_new = jnp.where(restart, jnp.ones_like(t_new), t_new)
        change = runner.relative_change(A_new, state.A)
        return state._replace(A=A_new, Z=Z_new, t=t_new, iteration=state.iteration + 1, converged=change < self.tol)

    def fixed_point(self, solution: tuple, Y: jax.Array, M: jax.Array) -> tuple:
        """(A,) -> (Proj_simplex(A - s (M^T M A - M^T Y)),): its fixed points are the FCLS solutions."""
        (A,) = solution
        return (_projected_gradient(A, mm(M.T, M), mm(M.T, Y)),)

    def objective(self, state: FCLSState, Y: jax.Array, M: jax.Array) -> jax.Array:
        """1/2 ||Y - M A||_F^2 via the Gram form (no L x N product); the default trace."""
        A = state.A
        return 0.5 * (jnp.sum(A * mm(state.G, A)) - 2.0 * jnp.sum(A * state.B) + state.yy)

    def result(self, state: FCLSState, Y: jax.Array, M: jax.Array,
               info: runner.RunInfo | None = None) -> UnmixingResult:
        """UnmixingResult(M, A, zero guidance, objective trace (None for a hand-run state), iterations, converged)."""
        info = runner.info_from_state(state) if info is None else info
        return UnmixingResult(M, state.A, jnp.zeros((Y.shape[1],), Y.dtype), info.trace, info.iterations,
                              info.converged)


@jax.jit
def solve_fcls(solver: FCLS, Y: jax.Array, M: jax.Array) -> UnmixingResult:
    """Run an `FCLS` solver on (Y, M) with its adjoint, the objective as trace (jitted; no validation)."""
    return runner.solve(solver, Y, M, trace_fn=solver.objective)


def fcls(Y, endmembers, *, max_iters: int = 500, tol: float = 1e-7, adjoint: str | runner.Adjoint = "none",
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
    adjoint = runner.check_adjoint(adjoint)
    return solve_fcls(FCLS(max_iters=max_iters, tol=float(tol), adjoint=adjoint), Y, M.astype(Y.dtype))
