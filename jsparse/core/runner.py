"""The shared solver runner: one loop for every iterative algorithm in jsparse.

An algorithm is a State NamedTuple of fixed-shape arrays (with at least `iteration` and
`converged` fields) plus two pure functions::

    state = init(problem..., settings)
    state = step(state, *args)          # increments `iteration`, sets `converged`

Problem data travels in `args` (never in closures), so one compiled program serves every
problem of the same shapes. `run` drives the loop in one of three modes, the *adjoint*:

``"none"``
    `lax.while_loop` that stops as soon as the state reports convergence, the iteration
    budget is spent or the state stops being finite. Fastest forward; not reverse-differentiable.
``"unrolled"``
    `lax.scan` over exactly `max_iters` steps; once converged, the state is frozen (each later
    step is computed and discarded), so reverse-mode gradients flow through the iterations.
``"implicit"``
    Forward solve with the while loop (no gradient through it), then `lax.custom_root` on the
    algorithm's declared fixed-point map: the gradient comes from the implicit function theorem
    at the converged solution, at the cost of one linear solve per backward pass.

Nothing raises inside the loop: divergence shows up as `RunInfo.finite == False` and
`converged == False`. Under `vmap` every trial stops (is frozen) on its own.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

__all__ = ["ADJOINTS", "RunInfo", "run", "relative_change", "tree_all_finite", "check_adjoint"]

ADJOINTS = ("none", "unrolled", "implicit")


class RunInfo(NamedTuple):
    """Diagnostics of one run (scalars; batched under vmap).

    Attributes:
      iterations: int32, steps taken until convergence (or `max_iters`).
      converged: bool, the algorithm's own stopping rule fired.
      finite: bool, every floating entry of the final state is finite.
      trace: (max_iters,) float, `trace_fn` after each step; NaN after the last step taken.
        None when no `trace_fn` was given.
    """

    iterations: jax.Array
    converged: jax.Array
    finite: jax.Array
    trace: jax.Array | None


def check_adjoint(adjoint: str, *, implicit_available: bool = True) -> None:
    """Raise ValueError for an unknown adjoint (or "implicit" without a fixed-point map)."""
    if adjoint not in ADJOINTS:
        raise ValueError(f"adjoint: expected one of {ADJOINTS}, got {adjoint!r}")
    if adjoint == "implicit" and not implicit_available:
        raise ValueError("adjoint: 'implicit' needs a fixed-point map, which this algorithm does not declare")


def tree_all_finite(tree: Any) -> jax.Array:
    """Scalar bool: all inexact leaves of `tree` are finite."""
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    if not leaves:
        return jnp.array(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def relative_change(new: Any, old: Any, *, floor: float = 1e-30) -> jax.Array:
    """||new - old|| / max(||old||, floor) over all leaves of two pytrees (real scalar)."""
    num = sum(jnp.sum(jnp.abs(a - b) ** 2) for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(old)))
    den = sum(jnp.sum(jnp.abs(b) ** 2) for b in jax.tree_util.tree_leaves(old))
    return jnp.sqrt(num) / jnp.maximum(jnp.sqrt(den), floor)


def _trace_dtype(state: Any) -> jnp.dtype:
    leaves = [x for x in jax.tree_util.tree_leaves(state) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    if not leaves:
        return jnp.float32
    return jnp.finfo(jnp.result_type(*leaves)).dtype  # real dtype of the widest leaf


def _run_while(step, state, args, max_iters, trace_fn):
    dtype = _trace_dtype(state)
    trace0 = jnp.full((max_iters,), jnp.nan, dtype) if trace_fn is not None else None

    def cond(carry):
        st, k, ok, _ = carry
        return (~st.converged) & (k < max_iters) & ok

    def body(carry):
        st, k, _, tr = carry
        new = step(st, *args)
        ok = tree_all_finite(new)
        if tr is not None:
            tr = tr.at[k].set(jnp.asarray(trace_fn(new, *args)).real.astype(dtype))
        return new, k + 1, ok, tr

    carry = (state, jnp.asarray(0, jnp.int32), tree_all_finite(state), trace0)
    final, _, ok, trace = lax.while_loop(cond, body, carry)
    return final, RunInfo(final.iteration, final.converged & ok, ok, trace)


def _run_scan(step, state, args, max_iters, trace_fn):
    dtype = _trace_dtype(state)

    def body(st, _):
        stop = st.converged | ~tree_all_finite(st)
        new = step(st, *args)
        st = jax.tree_util.tree_map(lambda n, o: jnp.where(stop, o, n), new, st)
        out = None
        if trace_fn is not None:
            value = jnp.asarray(trace_fn(st, *args)).real.astype(dtype)
            out = jnp.where(stop, jnp.nan, value)
        return st, out

    final, trace = lax.scan(body, state, None, length=max_iters)
    ok = tree_all_finite(final)
    return final, RunInfo(final.iteration, final.converged & ok, ok, trace)


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
    else:  # pragma: no cover - validated by run()
        raise ValueError(method)
    return unravel(from_real(x))


def run(
    step: Callable[..., Any],
    state: Any,
    args: Sequence[Any] = (),
    *,
    max_iters: int,
    adjoint: str = "none",
    fixed_point: Callable[..., Any] | None = None,
    solution: Sequence[str] = (),
    trace_fn: Callable[..., jax.Array] | None = None,
    linear_solver: str = "auto",
) -> tuple[Any, RunInfo]:
    """Iterate `state = step(state, *args)` until convergence.

    Args:
      step: pure `(state, *args) -> state`; must increment `state.iteration` and set
        `state.converged` (bool scalar).
      state: initial state (NamedTuple of fixed-shape arrays with `iteration`, `converged`).
      args: problem data, passed to `step`, `fixed_point` and `trace_fn` as positional arguments.
      max_iters: static iteration budget (also the trace length).
      adjoint: "none", "unrolled" or "implicit" (see module docstring).
      fixed_point: for "implicit": `(solution, *args) -> solution`, the algorithm's map whose fixed
        point is the converged solution; `solution` is a tuple of the state fields named below.
      solution: names of the state fields that form the fixed point (for "implicit"). After the
        solve they are replaced by their implicitly differentiable versions; anything the caller
        derives from the final state must be derived from these fields.
      trace_fn: optional `(state, *args) -> scalar` recorded after every step (e.g. the objective).
      linear_solver: "auto" (dense Jacobian up to 2048 unknowns, else GMRES), "dense" or "gmres";
        used by the implicit backward pass.

    Returns:
      (final_state, RunInfo)
    """
    if not isinstance(max_iters, int) or isinstance(max_iters, bool) or max_iters < 1:
        raise ValueError(f"max_iters: expected a positive int, got {max_iters!r}")
    check_adjoint(adjoint, implicit_available=fixed_point is not None)
    if linear_solver not in ("auto", "dense", "gmres"):
        raise ValueError(f"linear_solver: expected 'auto', 'dense' or 'gmres', got {linear_solver!r}")
    args = tuple(args)

    if adjoint == "none":
        return _run_while(step, state, args, max_iters, trace_fn)
    if adjoint == "unrolled":
        return _run_scan(step, state, args, max_iters, trace_fn)

    if not solution:
        raise ValueError("solution: 'implicit' needs the names of the state fields that form the fixed point")
    # Forward pass without gradients; the gradient comes from the fixed-point condition.
    final, info = _run_while(step, lax.stop_gradient(state), lax.stop_gradient(args), max_iters, trace_fn)
    x_star = tuple(getattr(final, name) for name in solution)

    def residual(x):
        fx = fixed_point(x, *args)
        return jax.tree_util.tree_map(lambda a, b: a - b, tuple(fx), tuple(x))

    x_diff = lax.custom_root(
        residual,
        x_star,
        solve=lambda _f, x0: x0,
        tangent_solve=lambda g, y: _solve_linear(g, y, linear_solver),
    )
    final = final._replace(**dict(zip(solution, x_diff)))
    return final, info
