"""FCLS: fully constrained least-squares abundances for known endmembers.

Solves, for every pixel n independently (all at once, as one matrix problem)::

    min_A  1/2 ||Y - M A||_F^2   s.t.  A >= 0,  1^T A = 1^T

with a primal active-set method per pixel (`_active_set`): each step solves the small
equality-constrained problem on the current face of the simplex, so the number of steps is
about the number of zero abundances a pixel gains or loses (a handful), whatever the
conditioning of M. Only the Gram form enters the loop (G = M^T M, B = M^T Y: R x R and R x N), a
step costs O(R^3 N), and every pixel's state (iterate, working set, done flag) has a fixed shape,
so the solve is jit- and vmap-friendly.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from jsparse.core import runner
from jsparse.core.validation import check_array, check_int, check_positive
from jsparse.unmixing._active_set import active_set_step
from jsparse.unmixing._common import UnmixingResult, check_image, mm, project_simplex

__all__ = ["FCLS", "FCLSState", "fcls"]


class FCLSState(NamedTuple):
    """FCLS iterate: A, W (R, N); done (N,); the Gram form about the mean endmember m from `init`:
    G = Mc^T Mc (R, R), B = Mc^T Yc (R, N), yy = ||Yc||_F^2 with Mc = M - m 1^T, Yc = Y - m 1^T."""

    A: jax.Array  # current iterate (feasible)
    W: jax.Array  # bool working set: entries held at zero
    done: jax.Array  # bool per pixel: KKT conditions hold
    G: jax.Array  # Gram matrix of the centred endmembers
    B: jax.Array  # centred endmembers' correlations with the centred pixels
    yy: jax.Array  # squared norm of the centred Y (for the objective)
    iteration: jax.Array  # int32
    converged: jax.Array  # bool: every pixel done


def _lipschitz(G):
    # ||G||_F >= lambda_max(G): a safe step without an eigendecomposition (no batched eigh).
    return jnp.sqrt(jnp.sum(G * G)) + jnp.finfo(G.dtype).tiny


def _projected_gradient(A, G, B):
    return project_simplex(A - (1.0 / _lipschitz(G)) * (mm(G, A) - B), 1.0, axis=0)


class FCLS(struct.PyTreeNode):
    """FCLS abundances by a per-pixel active-set method, as a solver object; data are (Y (L, N), M (L, R)).

    The Gram form (about the mean endmember, see `init`) is computed once in `init` and carried
    in the state, so a step costs O(R^3 N); step the state with the same (Y, M) it was initialised with.
    Pixels that are done stay fixed, so extra steps change nothing.

    Attributes:
      max_iters: step budget (static); a pixel needs about one step per zero abundance it gains
        or loses, so a few times R steps suffice.
      tol: a pixel is done at a face solution whose KKT multipliers are all >= -tol * max_i G_ii
        (tol is floored at 64 machine epsilons).
      adjoint: "none", "unrolled", "implicit" or an adjoint value (`jsparse.core.adjoint`); the
        implicit adjoint differentiates the fixed point of the projected-gradient map.

    Example::

        solver = FCLS()
        state = solver.init(Y, M)
        state, _ = jax.lax.scan(lambda s, _: (solver.step(s, Y, M), None), state, None, length=20)
        A = solver.result(state, Y, M).abundances
    """

    max_iters: int = struct.field(pytree_node=False, default=500)
    tol: float = struct.field(pytree_node=False, default=1e-7)
    adjoint: Any = struct.field(pytree_node=False, default="none")
    solution = ("A",)

    def init(self, Y: jax.Array, M: jax.Array) -> FCLSState:
        """Start from the simplex barycentre (feasible), every entry free.

        The Gram form is taken about the mean endmember m: with 1'a = 1, M a - y = (M - m 1') a - (y - m),
        so the objective is unchanged on the simplex while the spectra's common part, which
        dominates correlated endmembers and would swamp their differences in float32, drops out.
        """
        R, N = M.shape[1], Y.shape[1]
        A = jnp.full((R, N), 1.0 / R, Y.dtype)
        m = jnp.mean(M, axis=1, keepdims=True)
        Mc, Yc = M - m, Y - m
        return FCLSState(A, jnp.zeros((R, N), bool), jnp.zeros((N,), bool), mm(Mc.T, Mc), mm(Mc.T, Yc),
                         jnp.sum(Yc * Yc), jnp.zeros((), jnp.int32), jnp.zeros((), bool))

    def step(self, state: FCLSState, Y: jax.Array, M: jax.Array) -> FCLSState:
        """One active-set step for every pixel not yet done (a no-op once all are)."""
        del Y, M  # the Gram form in the state
        eps = jnp.finfo(state.G.dtype).eps
        scale = jnp.max(jnp.diagonal(state.G)) + jnp.finfo(state.G.dtype).tiny
        tol_kkt = jnp.maximum(jnp.asarray(self.tol, state.G.dtype), 64 * eps) * scale
        A, W, done = active_set_step(state.G, state.B, state.A, state.W, state.done, tol_kkt)
        # Once every pixel is done a step changes nothing, the iteration count included.
        count = state.iteration + jnp.where(state.converged, 0, 1).astype(jnp.int32)
        return state._replace(A=A, W=W, done=done, iteration=count, converged=jnp.all(done))

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
      max_iters: step budget of the active-set solver (a few times R steps suffice).
      tol: KKT tolerance: a pixel is done when no multiplier is below -tol * max_i (M^T M)_ii
        (floored at 64 machine epsilons).
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
