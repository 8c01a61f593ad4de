"""The contract every jsparse algorithm honours, as a reusable test suite.

Register an algorithm by subclassing `ContractSuite` in a test module and setting `case`::

    class TestFistaContract(ContractSuite):
        case = ContractCase(
            name="fista",
            fn=functools.partial(jsparse.lasso.fista, lam=0.1, max_iters=50),
            make_inputs=make_lasso_problem,              # (key, dtype) -> tuple of arrays
            dtypes=(jnp.float32, jnp.float64, jnp.complex64, jnp.complex128),
            bad_inputs=[BadInput(args=..., match="y")],
        )

The suite checks: jit == no-jit; vmap over a batch == a Python loop; a second call with new
data of the same shapes compiles nothing; every dtype works and inexact outputs keep the
input's precision; each bad input raises a ValueError whose message matches `match`.
Float64 and complex128 cases run inside `jax.enable_x64(True)`.

Solver objects (init / step / result) register with `SolverSuite` and a `SolverCase`::

    class TestFistaSolver(SolverSuite):
        case = SolverCase(
            name="FISTA",
            make_solver=lambda n: lasso.FISTA(lam=0.1, max_iters=n, tol=0.0),
            solve=lambda n, A, y: lasso.fista(A, y, 0.1, max_iters=n, tol=0.0),
            make_inputs=make_lasso_problem,
        )

It checks that a user's own `lax.scan` of `solver.step` for n steps followed by `solver.result`
equals the solve function run for exactly n steps (to 1e-10 in float64), and that `jax.jit(step)`
and `jax.vmap(step)` work (vmap == a loop of single steps).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest


def assert_clear_error(fn: Callable[..., Any], *args, match: str, **kwargs) -> BaseException:
    """`fn(*args, **kwargs)` must raise a plain `ValueError` or `jsparse.CorruptFileError`
    whose message matches `match` -- not a library's own subclass of ValueError (JSONDecodeError,
    UnicodeDecodeError) and not KeyError, IndexError, ZeroDivisionError or a JAX TypeError.
    Returns the exception for further checks."""
    from jsparse import CorruptFileError

    with pytest.raises(Exception) as info:
        fn(*args, **kwargs)
    err = info.value
    assert type(err) in (ValueError, CorruptFileError), f"{type(err).__module__}.{type(err).__name__}: {err}"
    assert info.match(match)
    return err


@dataclasses.dataclass(frozen=True)
class BadInput:
    """Arguments that must raise `ValueError` matching `match` (a regex, usually the argument name)."""

    args: Callable[[], tuple] | tuple
    match: str
    kwargs: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ContractCase:
    name: str
    fn: Callable[..., Any]
    make_inputs: Callable[[jax.Array, Any], tuple]
    dtypes: Sequence[Any] = (jnp.float32, jnp.float64)
    bad_inputs: Sequence[BadInput] = ()
    batch_size: int = 3
    rtol: float = 2e-4
    atol: float = 2e-5
    # Output leaves compared by the tests; default all. Lets a case skip e.g. noisy traces.
    select: Callable[[Any], Any] = lambda out: out


def _is_wide(dtype) -> bool:
    return jnp.dtype(dtype) in (jnp.dtype(jnp.float64), jnp.dtype(jnp.complex128))


def _ctx(dtype):
    return jax.enable_x64(True) if _is_wide(dtype) else jax.enable_x64(jax.config.jax_enable_x64)


def _assert_close(a, b, rtol, atol, what):
    chex.assert_trees_all_equal_structs(a, b)  # the same fields (structure) before any value
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb), what
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape, f"{what}: shape {x.shape} vs {y.shape}"
        if np.issubdtype(x.dtype, np.inexact):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=what)
        else:
            np.testing.assert_array_equal(x, y, err_msg=what)


class _CompileCounter:
    def __init__(self):
        self.count = 0
        self.active = False

    def __call__(self, name, *_, **__):
        if self.active and name == "/jax/core/compile/backend_compile_duration":
            self.count += 1


_COUNTER = _CompileCounter()
jax.monitoring.register_event_duration_secs_listener(_COUNTER)


class _DtypeParams:
    """Up to four dtype parameters per suite; those beyond a case's `dtypes` are skipped."""

    case: Any

    @pytest.fixture(params=["dtype0", "dtype1", "dtype2", "dtype3"])
    def dtype(self, request):
        i = int(request.param[-1])
        if i >= len(self.case.dtypes):
            pytest.skip("dtype not registered for this case")
        if _is_wide(self.case.dtypes[i]) and os.environ.get("JAX_ENABLE_X64", "").lower() in ("1", "true", "yes", "on"):
            # A 64-bit case runs under enable_x64(True) in every pass (`_ctx`): the default pass ran it already.
            pytest.skip("64-bit case: identical to its run in the default pass")
        return self.case.dtypes[i]


class ContractSuite(_DtypeParams):
    case: ContractCase

    def _inputs(self, seed, dtype):
        return self.case.make_inputs(jax.random.PRNGKey(seed), dtype)


    def test_jit_matches_eager(self, dtype):
        with _ctx(dtype):
            inputs = self._inputs(0, dtype)
            eager = self.case.select(self.case.fn(*inputs))
            jitted = self.case.select(jax.jit(self.case.fn)(*inputs))
            _assert_close(jitted, eager, self.case.rtol, self.case.atol, f"{self.case.name}: jit vs eager")

    def test_vmap_matches_loop(self, dtype):
        with _ctx(dtype):
            batch = [self._inputs(seed, dtype) for seed in range(self.case.batch_size)]
            stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *batch)
            batched = self.case.select(jax.vmap(self.case.fn)(*stacked))
            for i, inputs in enumerate(batch):
                single = self.case.select(self.case.fn(*inputs))
                row = jax.tree_util.tree_map(lambda x: x[i], batched)
                _assert_close(row, single, self.case.rtol, self.case.atol, f"{self.case.name}: vmap row {i}")

    def test_no_retrace_on_new_data(self, dtype):
        with _ctx(dtype):
            fn = self.case.fn
            jax.block_until_ready(fn(*self._inputs(0, dtype)))
            _COUNTER.count, _COUNTER.active = 0, True
            try:
                jax.block_until_ready(fn(*self._inputs(1, dtype)))
            finally:
                _COUNTER.active = False
            assert _COUNTER.count == 0, f"{self.case.name}: recompiled {_COUNTER.count} times on new data"

    def test_dtype_is_kept(self, dtype):
        with _ctx(dtype):
            out = self.case.fn(*self._inputs(0, dtype))
            want = jnp.finfo(jnp.dtype(dtype)).dtype  # real precision of the input
            for leaf in jax.tree_util.tree_leaves(self.case.select(out)):
                leaf = jnp.asarray(leaf)
                if jnp.issubdtype(leaf.dtype, jnp.inexact):
                    assert jnp.finfo(leaf.dtype).dtype == want, f"{self.case.name}: {leaf.dtype} from {dtype}"

    def test_bad_inputs_raise(self):
        if not self.case.bad_inputs:
            pytest.skip("no bad inputs registered")
        for bad in self.case.bad_inputs:
            args = bad.args() if callable(bad.args) else bad.args
            assert_clear_error(self.case.fn, *args, match=bad.match, **bad.kwargs)


@dataclasses.dataclass(frozen=True)
class SolverCase:
    """A solver object and its solve function, both run for exactly `n_steps` iterations.

    make_solver: n -> solver object that runs n steps (max_iters=n and a tolerance that never stops).
    solve: (n, *inputs) -> result of the solve function with the same settings.
    make_inputs: (key, dtype) -> tuple of problem data (the solver's data arguments).
    select: result -> the leaves to compare (default: every field but traces).
    init: optional (solver, *inputs) -> state, for solvers whose `init` takes more than the data
      (a PRNG key, a starting point); default `solver.init(*inputs)`.
    """

    name: str
    make_solver: Callable[[int], Any]
    solve: Callable[..., Any]
    make_inputs: Callable[[jax.Array, Any], tuple]
    dtypes: Sequence[Any] = (jnp.float64,)
    n_steps: int = 7
    batch_size: int = 2
    rtol: float = 1e-10
    atol: float = 1e-10
    select: Callable[[Any], Any] | None = None
    init: Callable[..., Any] | None = None


def _drop_traces(result):
    """Every field of a result NamedTuple except run traces (a hand-run state records none)."""
    if hasattr(result, "_fields"):
        return tuple(getattr(result, f) for f in result._fields if f not in ("trace", "objective"))
    return result


class SolverSuite(_DtypeParams):
    case: SolverCase

    def _init(self, solver, *data):
        return solver.init(*data) if self.case.init is None else self.case.init(solver, *data)

    def _select(self, out):
        return (self.case.select or _drop_traces)(out)


    def test_scan_of_step_matches_solve(self, dtype):
        n = self.case.n_steps
        with _ctx(dtype):
            data = self.case.make_inputs(jax.random.PRNGKey(0), dtype)
            solver = self.case.make_solver(n)

            @jax.jit
            def by_hand(*d):
                state = self._init(solver, *d)
                state, _ = jax.lax.scan(lambda st, _: (solver.step(st, *d), None), state, None, length=n)
                return solver.result(state, *d)

            mine = self._select(by_hand(*data))
            ref = self._select(self.case.solve(n, *data))
            rtol, atol = (self.case.rtol, self.case.atol) if _is_wide(dtype) else (2e-4, 2e-5)
            _assert_close(mine, ref, rtol, atol, f"{self.case.name}: scan of step vs solve")

    def test_jit_and_vmap_of_step(self, dtype):
        """jit(step) == step (eager, trial 0) and jit(vmap(step)) row i == jit(step) on trial i.
        (The vmap is compiled: an eager vmap of a step compiled every primitive on its own.)"""
        with _ctx(dtype):
            solver = self.case.make_solver(self.case.n_steps)
            batch = [self.case.make_inputs(jax.random.PRNGKey(seed), dtype) for seed in range(self.case.batch_size)]
            states = [self._init(solver, *d) for d in batch]
            step = jax.jit(solver.step)
            singles = [step(st, *d) for st, d in zip(states, batch)]
            eager = solver.step(states[0], *batch[0])
            _assert_close(singles[0], eager, 2e-4, 2e-5, f"{self.case.name}: jit(step) vs step")
            stack = lambda *xs: jnp.stack(xs)  # noqa: E731
            batched = jax.jit(jax.vmap(solver.step))(jax.tree_util.tree_map(stack, *states),
                                                     *jax.tree_util.tree_map(stack, *batch))
            for i, single in enumerate(singles):
                row = jax.tree_util.tree_map(lambda x: x[i], batched)
                _assert_close(row, single, 2e-4, 2e-5, f"{self.case.name}: vmap(step) row {i}")
