"""The shared solver runner: one loop for every iterative algorithm in jsparse.

An algorithm is a *solver object* (settings only, a frozen pytree) with pure methods over a State
NamedTuple of fixed-shape arrays (with at least `iteration` and `converged` fields)::

    state = solver.init(*data)
    state = solver.step(state, *data)          # increments `iteration`, sets `converged`
    result = solver.result(state, *data)       # the solve function's result type
    solution = solver.fixed_point(solution, *data)   # optional: the map of the implicit adjoint

Problem data travels as arguments (never in closures), so one compiled program serves every
problem of the same shapes, and a user can put `step` in a `lax.scan` of their own. `solve`
drives the loop with the solver's *adjoint* (`jsparse.core.adjoint`: `WhileLoop()`,
`Unrolled(checkpoint_every=None)`, `Implicit(linear_solver="auto")`, or the strings "none",
"unrolled", "implicit"), which decides how the loop runs and how it is differentiated.

Nothing raises inside the loop: divergence shows up as `RunInfo.finite == False` and
`converged == False`. Under `vmap` every trial stops (is frozen) on its own.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from jsparse.core.adjoint import (
    ADJOINTS,
    Adjoint,
    Implicit,
    RunInfo,
    Unrolled,
    WhileLoop,
    as_adjoint,
    tree_all_finite,
)

__all__ = ["ADJOINTS", "RunInfo", "Solver", "Adjoint", "WhileLoop", "Unrolled", "Implicit", "as_adjoint", "run",
           "solve", "info_from_state", "relative_change", "tree_all_finite", "check_adjoint"]


class Solver(Protocol):
    """What `solve` needs of a solver object (see the module docstring).

    Required (read-only): `max_iters` (static iteration budget), `adjoint` (an adjoint value or
    shorthand string), and the methods `init(*data)`, `step(state, *data)` and
    `result(state, *data, info=None)`; each solver names its own data arguments, so the
    methods are typed with open signatures. Optional, read with `getattr`: `solution`, the
    names of the state fields that form the fixed point (a class-level tuple such as
    `("x",)`; `()` if none), and `fixed_point(solution, *data)`, both for the implicit adjoint.
    """

    @property
    def max_iters(self) -> int: ...

    @property
    def adjoint(self) -> Any: ...

    def init(self, *data: Any, **kwargs: Any) -> Any: ...

    def step(self, state: Any, *data: Any, **kwargs: Any) -> Any: ...

    def result(self, state: Any, *data: Any, **kwargs: Any) -> Any: ...


def check_adjoint(adjoint: str | Adjoint, *, implicit_available: bool = True) -> Adjoint:
    """The adjoint value for `adjoint`; ValueError for an unknown one (see `adjoint.as_adjoint`)."""
    return as_adjoint(adjoint, implicit_available=implicit_available)


def info_from_state(state: Any) -> RunInfo:
    """RunInfo of a state a user stepped by hand: its iteration count, convergence and finiteness."""
    ok = tree_all_finite(state)
    return RunInfo(state.iteration, state.converged & ok, ok, None)


def relative_change(new: Any, old: Any, *, floor: float = 1e-30) -> jax.Array:
    """||new - old|| / max(||old||, floor) over all leaves of two pytrees (real scalar)."""
    pairs = zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(old))
    num = sum(jnp.sum(jnp.abs(a - b) ** 2) for a, b in pairs)
    den = sum(jnp.sum(jnp.abs(b) ** 2) for b in jax.tree_util.tree_leaves(old))
    return jnp.sqrt(num) / jnp.maximum(jnp.sqrt(den), floor)


def _solve_linear(g: Callable, y: Any, method: str) -> Any:
    """Solve g(x) = y for a linear map g on a pytree, via a real-valued flattening.

    Complex unknowns are split into real and imaginary parts: linearisations of non-holomorphic
    maps (|x|, conj) are only R-linear, so the solve must be over the reals.
    """
    flat_y, unravel = ravel_pytree(y)
    n = flat_y.shape[0]
    complex_ = jnp.iscomplexobj(flat_y)

    def to_real(v):
        return jnp.concatenate([v.real, v.imag]) if complex_ else v

    def from_real(r):
        return lax.complex(r[:n], r[n:]) if complex_ else r

    def g_real(r):
        return to_real(ravel_pytree(g(unravel(from_real(r))))[0])

    b = to_real(flat_y)
    if method == "auto":
        method = "dense" if b.shape[0] <= 2048 else "gmres"
    if method == "dense":
        jac = jax.jacfwd(g_real)(jnp.zeros_like(b))
        x = jnp.linalg.solve(jac, b)
    elif method == "gmres":
        tol = 1e-12 if b.dtype == jnp.float64 else 1e-6
        x, _ = jax.scipy.sparse.linalg.gmres(g_real, b, tol=tol, atol=0.0, restart=min(50, b.shape[0]), maxiter=20)
    else:  # pragma: no cover - validated by the Implicit adjoint
        raise ValueError(method)
    return unravel(from_real(x))


def run(
    step: Callable[..., Any],
    state: Any,
    args: Sequence[Any] = (),
    *,
    max_iters: int,
    adjoint: str | Adjoint = "none",
    fixed_point: Callable[..., Any] | None = None,
    solution: Sequence[str] = (),
    trace_fn: Callable[..., jax.Array] | None = None,
    linear_solver: str | None = None,
) -> tuple[Any, RunInfo]:
    """Iterate `state = step(state, *args)` until convergence (the loop under `solve`).

    Args:
      step: pure `(state, *args) -> state`; must increment `state.iteration` and set
        `state.converged` (bool scalar).
      state: initial state (NamedTuple of fixed-shape arrays with `iteration`, `converged`).
      args: problem data, passed to `step`, `fixed_point` and `trace_fn` as positional arguments.
      max_iters: static iteration budget (also the trace length).
      adjoint: an adjoint value or shorthand (see `jsparse.core.adjoint`).
      fixed_point: for the implicit adjoint: `(solution, *args) -> solution`, the map whose fixed
        point is the converged solution; `solution` is a tuple of the state fields named below.
      solution: names of the state fields that form the fixed point. After an implicit solve they
        are replaced by their implicitly differentiable versions; anything the caller derives
        from the final state must be derived from these fields.
      trace_fn: optional `(state, *args) -> scalar` recorded after every step (e.g. the objective).
      linear_solver: overrides the implicit adjoint's linear solver ("auto", "dense", "gmres").

    Returns:
      (final_state, RunInfo)
    """
    if not isinstance(max_iters, int) or isinstance(max_iters, bool) or max_iters < 1:
        raise ValueError(f"max_iters: expected a positive int, got {max_iters!r}")
    adj = as_adjoint(adjoint, implicit_available=fixed_point is not None)
    if linear_solver is not None:
        adj = Implicit(linear_solver, adj.inner_cap) if isinstance(adj, Implicit) else adj
    args = tuple(args)
    if not isinstance(adj, Implicit):
        return adj.outer_loop(step, state, args, max_iters, trace_fn)
    if not solution:
        raise ValueError("solution: 'implicit' needs the names of the state fields that form the fixed point")
    return _run_implicit(adj, step, state, args, max_iters, fixed_point, tuple(solution), trace_fn)


def _run_implicit(adj: Implicit, step, state, args, max_iters, fixed_point, solution, trace_fn):
    # Forward pass without gradients; the gradient comes from the fixed-point condition.
    final, info = adj.outer_loop(step, lax.stop_gradient(state), lax.stop_gradient(args), max_iters, trace_fn)
    x_star = tuple(getattr(final, name) for name in solution)

    def residual(x):
        fx = fixed_point(x, *args)
        return jax.tree_util.tree_map(lambda a, b: a - b, tuple(fx), tuple(x))

    x_diff = lax.custom_root(
        residual,
        x_star,
        solve=lambda _f, x0: x0,
        tangent_solve=lambda g, y: _solve_linear(g, y, adj.linear_solver),
    )
    return final._replace(**dict(zip(solution, x_diff))), info


def solve(solver: Solver, *data: Any, trace_fn: Callable[..., jax.Array] | None = None, state: Any = None) -> Any:
    """Run `solver` on `data` with its adjoint and return `solver.result(final, *data, info=...)`.

    Args:
      solver: a solver object (see `Solver`).
      *data: the problem data, passed to every method of the solver.
      trace_fn: optional `(state, *data) -> scalar` recorded after every step.
      state: optional starting state (default `solver.init(*data)`), e.g. a warm start.
    """
    fixed_point = getattr(solver, "fixed_point", None)
    if state is None:
        state = solver.init(*data)
    final, info = run(solver.step, state, data, max_iters=solver.max_iters, adjoint=solver.adjoint,
                      fixed_point=fixed_point, solution=getattr(solver, "solution", ()), trace_fn=trace_fn)
    return solver.result(final, *data, info=info)
