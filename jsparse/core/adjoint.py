"""Adjoints: how a solver's loop is run, and so how it is differentiated.

An adjoint is a small frozen value that hands out loop primitives (after optimistix's
`ImplicitAdjoint` / `RecursiveCheckpointAdjoint`). Solvers never branch on which adjoint they got:
the runner asks it for the outer loop, and inner loops (such as AM-KroSBL's M-step sweeps) ask it
for theirs with `inner_loop`.

``WhileLoop()``
    `lax.while_loop` that stops as soon as the state reports convergence, the budget is spent or
    the state stops being finite. Fastest forward; not reverse-differentiable.
``Unrolled(checkpoint_every=None)``
    `lax.scan` over exactly `max_iters` steps, each state frozen once converged (later steps are
    computed and discarded), so reverse-mode gradients flow through the iterations. With
    `checkpoint_every=k` the scan runs in blocks of k steps under `jax.checkpoint`: the backward
    pass stores one state per block and recomputes the steps inside it, so memory grows with
    `max_iters / k` instead of `max_iters`.
``Implicit(linear_solver="auto")``
    The forward solve runs the while loop without gradients; the gradient comes from the
    implicit function theorem at the converged solution (`lax.custom_root` on the solver's
    declared fixed-point map), at the cost of one linear solve per backward pass:
    "dense" (Jacobian, up to 2048 unknowns under "auto") or "gmres".

Strings remain accepted shorthands: "none" (or "while"), "unrolled", "implicit" (`as_adjoint`).
Inner loops of the differentiable adjoints are frozen-after-convergence scans, capped at
`inner_cap` iterations (scanning a long inner budget on every outer step costs more than it buys).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["Adjoint", "WhileLoop", "Unrolled", "Implicit", "as_adjoint", "ADJOINTS", "RunInfo",
           "tree_all_finite", "LINEAR_SOLVERS"]

ADJOINTS = ("none", "unrolled", "implicit")
LINEAR_SOLVERS = ("auto", "dense", "gmres")


class RunInfo(NamedTuple):
    """Diagnostics of one run (scalars; batched under vmap).

    Attributes:
      iterations: int32, steps taken until convergence (or `max_iters`).
      converged: bool, the algorithm's own stopping rule fired and the final state is finite.
      finite: bool, every floating entry of the final state is finite.
      trace: (max_iters,) float, `trace_fn` after each step; NaN after the last step taken.
        None when no `trace_fn` was given.
    """

    iterations: jax.Array
    converged: jax.Array
    finite: jax.Array
    trace: jax.Array | None


def tree_all_finite(tree: Any) -> jax.Array:
    """Scalar bool: all inexact leaves of `tree` are finite."""
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    if not leaves:
        return jnp.array(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _trace_dtype(state: Any) -> jnp.dtype:
    leaves = [x for x in jax.tree_util.tree_leaves(state) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    if not leaves:
        return jnp.dtype(jnp.float32)
    return jnp.finfo(np.result_type(*(jnp.asarray(x).dtype for x in leaves))).dtype  # real dtype of the widest leaf


def _freeze(stop: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda n, o: jnp.where(stop, o, n), new, old)


def _while_inner(body: Callable, x0: Any, done: Callable, max_iters: int) -> Any:
    def cond(carry):
        _, k, stop = carry
        return (~stop) & (k < max_iters)

    def loop_body(carry):
        x, k, _ = carry
        new = body(x)
        return new, k + 1, done(new, x)

    out, _, _ = lax.while_loop(cond, loop_body, (x0, jnp.asarray(0, jnp.int32), jnp.asarray(False)))
    return out


def _scan_inner(body: Callable, x0: Any, done: Callable, max_iters: int) -> Any:
    def scan_body(carry, _):
        x, stopped = carry
        new = body(x)
        stop = done(new, x)
        return (_freeze(stopped, new, x), stopped | stop), None

    (out, _), _ = lax.scan(scan_body, (x0, jnp.asarray(False)), None, length=max_iters)
    return out


def _while_outer(step: Callable[..., Any], state: Any, args: tuple, max_iters: int,
                 trace_fn: Callable[..., Any] | None) -> tuple[Any, RunInfo]:
    dtype = _trace_dtype(state)
    trace0 = jnp.full((max_iters,), jnp.nan, dtype) if trace_fn is not None else None

    def cond(carry):
        st, k, ok, _ = carry
        return (~st.converged) & (k < max_iters) & ok

    def body(carry):
        st, k, _, tr = carry
        new = step(st, *args)
        ok = tree_all_finite(new)
        if trace_fn is not None:  # then the carried trace is an array
            tr = tr.at[k].set(jnp.asarray(trace_fn(new, *args)).real.astype(dtype))
        return new, k + 1, ok, tr

    carry = (state, jnp.asarray(0, jnp.int32), tree_all_finite(state), trace0)
    final, _, ok, trace = lax.while_loop(cond, body, carry)
    return final, RunInfo(final.iteration, final.converged & ok, ok, trace)


def _scan_outer(step: Callable[..., Any], state: Any, args: tuple, max_iters: int,
                trace_fn: Callable[..., Any] | None, checkpoint_every: int | None) -> tuple[Any, RunInfo]:
    dtype = _trace_dtype(state)

    def one(carry, k):
        st = carry
        stop = st.converged | ~tree_all_finite(st) | (k >= max_iters)
        st = _freeze(stop, step(st, *args), st)
        out = None
        if trace_fn is not None:
            out = jnp.where(stop, jnp.nan, jnp.asarray(trace_fn(st, *args)).real.astype(dtype))
        return st, out

    if checkpoint_every is None:
        final, trace = lax.scan(one, state, jnp.arange(max_iters))
    else:
        blocks = -(-max_iters // checkpoint_every)
        ks = jnp.arange(blocks * checkpoint_every).reshape(blocks, checkpoint_every)

        @jax.checkpoint
        def block(st, k_block):
            return lax.scan(one, st, k_block)

        final, trace = lax.scan(block, state, ks)
        if trace is not None:
            trace = trace.reshape(-1)[:max_iters]
    ok = tree_all_finite(final)
    return final, RunInfo(final.iteration, final.converged & ok, ok, trace)


class Adjoint:
    """Base of the adjoint values (see the module docstring). Subclasses are frozen dataclasses."""

    inner_cap: int | None = None
    differentiable: bool = False

    def outer_loop(self, step, state, args, max_iters, trace_fn) -> tuple[Any, RunInfo]:
        raise NotImplementedError

    def inner_loop(self, body: Callable[[Any], Any], x0: Any, done: Callable[[Any, Any], jax.Array],
                   max_iters: int) -> Any:
        """Iterate `x = body(x)` from x0 until `done(new, old)` or `max_iters` iterations.

        WhileLoop stops early; the differentiable adjoints scan at most `min(max_iters, inner_cap)`
        iterations and freeze x once `done` fired, which gives the same value.
        """
        if not self.differentiable:
            return _while_inner(body, x0, done, max_iters)
        cap = max_iters if self.inner_cap is None else min(max_iters, self.inner_cap)
        return _scan_inner(body, x0, done, cap)


@dataclasses.dataclass(frozen=True)
class WhileLoop(Adjoint):
    """Early-stopping `lax.while_loop`; forward only."""

    def outer_loop(self, step, state, args, max_iters, trace_fn):
        return _while_outer(step, state, args, max_iters, trace_fn)


@dataclasses.dataclass(frozen=True)
class Unrolled(Adjoint):
    """Frozen-after-convergence `lax.scan`, reverse-differentiable; optional block checkpointing.

    Attributes:
      checkpoint_every: None, or k >= 1: wrap each block of k steps in `jax.checkpoint`.
      inner_cap: the most iterations an inner loop scans (default 50).
    """

    checkpoint_every: int | None = None
    inner_cap: int | None = 50
    differentiable: bool = dataclasses.field(default=True, init=False, repr=False)

    def __post_init__(self):
        k = self.checkpoint_every
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise ValueError(f"checkpoint_every: expected None or a positive int, got {k!r}")

    def outer_loop(self, step, state, args, max_iters, trace_fn):
        return _scan_outer(step, state, args, max_iters, trace_fn, self.checkpoint_every)


@dataclasses.dataclass(frozen=True)
class Implicit(Adjoint):
    """Implicit-function-theorem gradients at the converged fixed point.

    Attributes:
      linear_solver: "auto" (dense Jacobian up to 2048 unknowns, else GMRES), "dense" or "gmres".
      inner_cap: the most iterations an inner loop scans (default 50); inner loops are scans so
        that the fixed-point map is reverse-differentiable.
    """

    linear_solver: str = "auto"
    inner_cap: int | None = 50
    differentiable: bool = dataclasses.field(default=True, init=False, repr=False)

    def __post_init__(self):
        if self.linear_solver not in LINEAR_SOLVERS:
            raise ValueError(f"linear_solver: expected one of {LINEAR_SOLVERS}, got {self.linear_solver!r}")

    def outer_loop(self, step, state, args, max_iters, trace_fn):
        return _while_outer(step, state, args, max_iters, trace_fn)


_SHORTHANDS = {"none": WhileLoop, "while": WhileLoop, "unrolled": Unrolled, "implicit": Implicit}


def as_adjoint(adjoint: str | Adjoint, *, implicit_available: bool = True) -> Adjoint:
    """The adjoint value for `adjoint` (a value, or one of the shorthands "none", "unrolled", "implicit").

    Raises:
      ValueError: unknown shorthand or type, or "implicit" for a solver without a fixed-point map.
    """
    if isinstance(adjoint, str):
        if adjoint not in _SHORTHANDS:
            raise ValueError(f"adjoint: expected one of {ADJOINTS} or an adjoint value, got {adjoint!r}")
        adjoint = _SHORTHANDS[adjoint]()
    if not isinstance(adjoint, Adjoint):
        raise ValueError(f"adjoint: expected one of {ADJOINTS} or an adjoint value, got {adjoint!r}")
    if isinstance(adjoint, Implicit) and not implicit_available:
        raise ValueError("adjoint: 'implicit' needs a fixed-point map, which this algorithm does not declare")
    return adjoint
