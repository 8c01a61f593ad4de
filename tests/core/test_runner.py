"""The shared runner: three adjoints agree forward, gradients match closed forms and finite differences."""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse.core import runner


class SqrtState(NamedTuple):
    x: jax.Array
    iteration: jax.Array
    converged: jax.Array


def sqrt_step(state, a):
    """Heron's iteration x <- (x + a/x)/2, whose fixed point is sqrt(a)."""
    x = 0.5 * (state.x + a / state.x)
    return SqrtState(x, state.iteration + 1, jnp.abs(x - state.x) < 1e-12 * jnp.abs(x) + 1e-30)


def heron(a, adjoint, max_iters=60):
    state = SqrtState(jnp.ones_like(a), jnp.zeros((), jnp.int32), jnp.zeros((), bool))
    final, info = runner.run(
        sqrt_step,
        state,
        (a,),
        max_iters=max_iters,
        adjoint=adjoint,
        fixed_point=lambda sol, a_: (0.5 * (sol[0] + a_ / sol[0]),),
        solution=("x",),
        trace_fn=lambda st, a_: (st.x**2 - a_) ** 2,
    )
    return final, info


@pytest.mark.parametrize("adjoint", runner.ADJOINTS)
def test_forward_converges_to_closed_form(adjoint, x64):
    final, info = heron(jnp.asarray(7.0), adjoint)
    np.testing.assert_allclose(final.x, np.sqrt(7.0), rtol=1e-12)
    assert bool(info.converged) and bool(info.finite)
    assert 3 < int(info.iterations) < 60


@pytest.mark.parametrize("adjoint", ["unrolled", "implicit"])
def test_gradient_matches_closed_form(adjoint, x64):
    grad = jax.grad(lambda a: heron(a, adjoint)[0].x)(jnp.asarray(7.0))
    np.testing.assert_allclose(grad, 0.5 / np.sqrt(7.0), rtol=1e-9)


def test_trace_is_nan_after_stop_and_same_across_modes(x64):
    _, info_while = heron(jnp.asarray(3.0), "none")
    _, info_scan = heron(jnp.asarray(3.0), "unrolled")
    assert info_while.trace is not None and info_scan.trace is not None
    k = int(info_while.iterations)
    assert np.all(np.isfinite(info_while.trace[:k])) and np.all(np.isnan(info_while.trace[k:]))
    np.testing.assert_allclose(info_scan.trace, info_while.trace, rtol=1e-12, atol=1e-20, equal_nan=True)
    assert int(info_scan.iterations) == k


def test_budget_exhausted_is_not_converged():
    _, info = heron(jnp.asarray(1e6), "none", max_iters=3)
    assert int(info.iterations) == 3 and not bool(info.converged)


def test_diverging_trial_is_flagged_without_poisoning_the_batch():
    class S(NamedTuple):
        x: jax.Array
        iteration: jax.Array
        converged: jax.Array

    def step(st, r):
        x = r * st.x  # |r| > 1 overflows to inf; |r| < 1 converges to 0
        return S(x, st.iteration + 1, jnp.abs(x) < 1e-6)

    def solve(r):
        start = S(jnp.ones(()), jnp.zeros((), jnp.int32), jnp.zeros((), bool))
        final, info = runner.run(step, start, (r,), max_iters=500)
        return final.x, info

    x, info = jax.vmap(solve)(jnp.asarray([0.5, 1e30, 0.25]))
    assert info.converged.tolist() == [True, False, True]
    assert info.finite.tolist() == [True, False, True]
    assert np.all(np.abs(np.asarray(x)[[0, 2]]) < 1e-6)
    # the diverging trial stopped as soon as it became non-finite
    assert int(info.iterations[1]) < 500


def test_bad_arguments_raise():
    state = SqrtState(jnp.ones(()), jnp.zeros((), jnp.int32), jnp.zeros((), bool))
    with pytest.raises(ValueError, match="adjoint"):
        runner.run(sqrt_step, state, (2.0,), max_iters=5, adjoint="backprop")
    with pytest.raises(ValueError, match="adjoint"):
        runner.run(sqrt_step, state, (2.0,), max_iters=5, adjoint="implicit")  # no fixed-point map
    with pytest.raises(ValueError, match="max_iters"):
        runner.run(sqrt_step, state, (2.0,), max_iters=0)
    with pytest.raises(ValueError, match="solution"):
        runner.run(sqrt_step, state, (2.0,), max_iters=5, adjoint="implicit", fixed_point=lambda s, a: s)


def test_relative_change_and_finite_helpers():
    assert float(runner.relative_change(jnp.asarray([3.0, 4.0]), jnp.asarray([0.0, 0.0]))) > 1e20
    np.testing.assert_allclose(runner.relative_change(jnp.asarray([1.0, 1.0]), jnp.asarray([1.0, 2.0])), 1 / np.sqrt(5))
    assert bool(runner.tree_all_finite({"a": jnp.ones(2), "n": jnp.arange(3)}))
    assert not bool(runner.tree_all_finite((jnp.ones(2), jnp.asarray([jnp.inf]))))
