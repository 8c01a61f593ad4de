"""ISTA and FISTA for the LASSO, real or complex, through the shared runner.

Problem:  minimise_x  0.5 ||A x - y||_2^2 + lam ||x||_1,   A: (M, N), y: (M,), x: (N,).

For complex data ||x||_1 = sum_n |x_n| and the proximal map is the complex soft threshold
x * max(1 - tau/|x|, 0). The step size is 1/L with L = ||A||_2^2 (largest singular value squared).

`FISTA` / `ISTA` are the solver objects (settings only; `init`, `step`, `result`, `fixed_point`
over the data (A, y)); `fista` / `ista` validate, build one and run it. The fixed-point map
T(x) = prox_{s lam}(x - s A^H (A x - y)) gives implicit gradients (`adjoint="implicit"`), and
`adjoint="unrolled"` differentiates through the iterations. It also serves as a sparse-recovery
baseline for the families.

Scale: lam is in the units of the data (|A^H y| has the units of lam), and every update is
homogeneous (the step 1/||A||², the gradient and the threshold s lam carry their units; the
stopping rule is relative), so with a > 0, c > 0:

    fista(a A, c y, a c lam).x = (c / a) fista(A, y, lam).x      (same iterations; objective x c²)

A penalty relative to the data is lam = r max_n |a_n^H y| (r in (0, 1); r >= 1 gives x = 0).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from jsparse.core import linalg, runner, validation
from jsparse.core.linalg import HIGHEST as _HIGHEST

__all__ = ["FISTA", "ISTA", "LassoState", "LassoResult", "init", "step", "fixed_point", "objective", "fista", "ista",
           "soft_threshold"]


class LassoState(NamedTuple):
    """FISTA iterate. Shapes: x, z (N,) in the data dtype; t, step_size real scalars."""

    x: jax.Array  # current estimate
    z: jax.Array  # extrapolated point (equals x for ISTA)
    t: jax.Array  # FISTA momentum scalar
    step_size: jax.Array  # 1 / ||A||_2^2
    iteration: jax.Array  # int32
    converged: jax.Array  # bool


class LassoResult(NamedTuple):
    """x: (N,) solution; objective: (max_iters,) trace (NaN after the stop; None from a hand-run state)."""

    x: jax.Array
    iterations: jax.Array
    converged: jax.Array
    finite: jax.Array
    objective: jax.Array | None


def soft_threshold(x: jax.Array, tau: jax.Array) -> jax.Array:
    """Proximal map of tau * ||.||_1 (real or complex): x * max(1 - tau / |x|, 0)."""
    mag = jnp.abs(x)
    tiny = jnp.finfo(mag.dtype).tiny
    return x * jnp.maximum(1.0 - tau / jnp.maximum(mag, tiny), 0.0).astype(x.dtype)


def _gradient(x, A, y):
    residual = jnp.matmul(A, x, precision=_HIGHEST) - y
    return jnp.matmul(jnp.conj(A).T, residual, precision=_HIGHEST)


def objective(x: jax.Array, A: jax.Array, y: jax.Array, lam: jax.Array) -> jax.Array:
    """0.5 ||A x - y||^2 + lam ||x||_1 (real scalar)."""
    r = jnp.matmul(A, x, precision=_HIGHEST) - y
    return 0.5 * jnp.sum(jnp.abs(r) ** 2) + lam * jnp.sum(jnp.abs(x))


def _step_size(A: jax.Array) -> jax.Array:
    real = jnp.finfo(A.dtype).dtype
    lipschitz = linalg.spectral_norm(A) ** 2
    return (1.0 / jnp.maximum(lipschitz, jnp.finfo(real).tiny)).astype(real)


def init(A: jax.Array, y: jax.Array, x0: jax.Array | None = None) -> LassoState:
    """Start at x0 (default 0) with step 1/||A||_2^2."""
    dtype = np.result_type(A.dtype, y.dtype)
    real = jnp.finfo(dtype).dtype
    x = jnp.zeros(A.shape[1], dtype) if x0 is None else x0.astype(dtype)
    return LassoState(x, x, jnp.ones((), real), _step_size(A.astype(dtype)), jnp.zeros((), jnp.int32),
                      jnp.zeros((), bool))


def step(state: LassoState, A, y, lam, tol, accelerated: bool = True) -> LassoState:
    """One ISTA/FISTA iteration; converged when the relative change of x falls below tol."""
    s = state.step_size
    x_new = soft_threshold(state.z - s.astype(A.dtype) * _gradient(state.z, A, y), s * lam)
    if accelerated:
        t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * state.t**2))
        z_new = x_new + ((state.t - 1.0) / t_new).astype(x_new.dtype) * (x_new - state.x)
    else:
        t_new, z_new = state.t, x_new
    change = runner.relative_change(x_new, state.x)
    return LassoState(x_new, z_new, t_new, s, state.iteration + 1, change < tol)


def fixed_point(solution, A, y, lam, tol, step_size):
    """T(x) = prox(x - s grad f(x)); its fixed points are the LASSO minimisers (any s > 0)."""
    (x,) = solution
    s = lax.stop_gradient(step_size)
    return (soft_threshold(x - s.astype(A.dtype) * _gradient(x, A, y), s * lam),)


class FISTA(struct.PyTreeNode):
    """FISTA for the LASSO (Beck & Teboulle 2009) as a solver object; data are (A (M, N), y (M,)).

    Attributes:
      lam: l1 weight >= 0 (a pytree leaf: differentiable, vmappable, no recompilation).
      max_iters: iteration budget (static). tol: stop when ||x_k - x_{k-1}|| / ||x_{k-1}|| < tol.
      adjoint: `jsparse.core.adjoint` value or shorthand ("none", "unrolled", "implicit").
      accelerated: False gives plain ISTA (see `ISTA`).

    Example::

        solver = FISTA(lam=0.1)
        state = solver.init(A, y)
        state, _ = jax.lax.scan(lambda s, _: (solver.step(s, A, y), None), state, None, length=100)
        x = solver.result(state, A, y).x
    """

    lam: Any
    max_iters: int = struct.field(pytree_node=False, default=500)
    tol: float = struct.field(pytree_node=False, default=1e-6)
    adjoint: Any = struct.field(pytree_node=False, default="none")
    accelerated: bool = struct.field(pytree_node=False, default=True)
    solution = ("x",)

    def _lam(self, A):
        return jnp.asarray(self.lam, jnp.finfo(A.dtype).dtype)

    def init(self, A: jax.Array, y: jax.Array, x0: jax.Array | None = None) -> LassoState:
        """State at x0 (default 0) with step size 1/||A||_2^2."""
        return init(A, y, x0)

    def step(self, state: LassoState, A: jax.Array, y: jax.Array) -> LassoState:
        """One proximal-gradient iteration (pure; jit / vmap / lax.scan-able)."""
        return step(state, A, y, self._lam(A), self.tol, self.accelerated)

    def fixed_point(self, solution: tuple, A: jax.Array, y: jax.Array) -> tuple:
        """(x,) -> (T(x),): the proximal-gradient map whose fixed points are the minimisers."""
        return fixed_point(solution, A, y, self._lam(A), self.tol, _step_size(A))

    def objective(self, state: LassoState, A: jax.Array, y: jax.Array) -> jax.Array:
        """The LASSO objective at the state's x (the default trace)."""
        return objective(state.x, A, y, self._lam(A))

    def result(self, state: LassoState, A: jax.Array, y: jax.Array,
               info: runner.RunInfo | None = None) -> LassoResult:
        """LassoResult of a final state (`info` from the runner, or read off the state)."""
        info = runner.info_from_state(state) if info is None else info
        return LassoResult(state.x, info.iterations, info.converged, info.finite, info.trace)


class ISTA(FISTA):
    """Plain ISTA (proximal gradient without momentum); the same settings as `FISTA`."""

    accelerated: bool = struct.field(pytree_node=False, default=False)


@jax.jit
def _solve(solver: FISTA, A, y, x0):
    return runner.solve(solver, A, y, state=solver.init(A, y, x0), trace_fn=solver.objective)


def fista(
    A: jax.Array,
    y: jax.Array,
    lam: float | jax.Array,
    *,
    max_iters: int = 500,
    tol: float = 1e-6,
    adjoint: str | runner.Adjoint = "none",
    x0: jax.Array | None = None,
    accelerated: bool = True,
) -> LassoResult:
    """Solve the LASSO with FISTA: validate, build a `FISTA` solver, run it.

    Args:
      A: (M, N) real or complex dictionary.
      y: (M,) measurements (same kind of dtype as A; the wider one is used).
      lam: l1 weight >= 0 in data units (see the module docstring: scaling A by a and y by c
        scales x by c/a when lam is scaled by a c); traced: a new value does not recompile.
      max_iters: iteration budget. tol: stop when ||x_k - x_{k-1}|| / ||x_{k-1}|| < tol.
      adjoint: "none" | "unrolled" | "implicit" or an adjoint value (see `jsparse.core.adjoint`).
      x0: optional (N,) warm start.
      accelerated: False gives plain ISTA.

    Returns:
      LassoResult(x (N,), iterations, converged, finite, objective trace (max_iters,)).
    """
    A = validation.check_array(A, "A", ndim=2, dtype="inexact")
    if 0 in A.shape:
        raise ValueError(f"A: expected no zero-length dimension, got shape {A.shape}")
    y = validation.check_array(y, "y", shape=(A.shape[0],), dtype="inexact")
    validation.check_real(lam=lam, tol=tol)
    validation.check_positive(lam, "lam", allow_zero=True)
    validation.check_positive(tol, "tol", allow_zero=True)
    validation.check_int(max_iters, "max_iters", minimum=1)
    adjoint = runner.check_adjoint(adjoint)
    if x0 is not None:
        x0 = validation.check_array(x0, "x0", shape=(A.shape[1],), dtype="inexact")
    dtype = np.result_type(A.dtype, y.dtype)
    real = jnp.finfo(dtype).dtype
    solver = FISTA(jnp.asarray(lam, real), max_iters=max_iters, tol=float(tol), adjoint=adjoint,
                   accelerated=accelerated)
    return _solve(solver, A.astype(dtype), y.astype(dtype), x0)


def ista(A, y, lam, **kwargs) -> LassoResult:
    """Plain ISTA (proximal gradient without momentum); same arguments as `fista`."""
    return fista(A, y, lam, accelerated=False, **kwargs)
