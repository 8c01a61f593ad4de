"""ISTA/FISTA: optimality (KKT), scikit-learn agreement, runner modes and gradients, contract."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse import lasso
from tests.contract import BadInput, ContractCase, ContractSuite


def problem(key, dtype, m=20, n=30, k=3):
    real = jnp.finfo(jnp.dtype(dtype)).dtype
    k1, k2, k3 = jax.random.split(key, 3)
    A = jax.random.normal(k1, (m, n), real)
    x = jnp.zeros(n, real).at[:k].set(1.0 + jax.random.uniform(k2, (k,), real))
    if jnp.issubdtype(jnp.dtype(dtype), jnp.complexfloating):
        A = jax.lax.complex(A, jax.random.normal(k3, (m, n), real))
        x = x.astype(dtype) * jnp.exp(jax.lax.complex(jnp.zeros(n, real), jnp.arange(n, dtype=real)))
    A, x = A.astype(dtype), x.astype(dtype)
    y = A @ x + 0.01 * jax.random.normal(k3, (m,), real).astype(dtype)
    return A, y


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
def test_solution_satisfies_kkt(dtype, x64):
    A, y = problem(jax.random.PRNGKey(0), dtype)
    lam = 0.5
    res = lasso.fista(A, y, lam, max_iters=5000, tol=1e-12)
    assert bool(res.converged)
    x = np.asarray(res.x)
    g = np.asarray(A).conj().T @ (np.asarray(y) - np.asarray(A) @ x)  # = lam * subgradient of ||x||_1
    on = np.abs(x) > 1e-8
    np.testing.assert_allclose(g[on], lam * x[on] / np.abs(x[on]), atol=1e-7)
    assert np.all(np.abs(g[~on]) <= lam + 1e-7)


def test_matches_scikit_learn(x64):
    sklearn = pytest.importorskip("sklearn.linear_model")
    A, y = problem(jax.random.PRNGKey(1), jnp.float64)
    lam = 0.3
    ref = sklearn.Lasso(alpha=lam / A.shape[0], fit_intercept=False, tol=1e-12, max_iter=100000).fit(A, y).coef_
    ours = lasso.fista(A, y, lam, max_iters=10000, tol=1e-13).x
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_ista_and_fista_agree_and_objective_decreases_for_ista(x64):
    A, y = problem(jax.random.PRNGKey(2), jnp.float64)
    f = lasso.fista(A, y, 0.2, max_iters=5000, tol=1e-12)
    i = lasso.ista(A, y, 0.2, max_iters=20000, tol=1e-13)
    np.testing.assert_allclose(f.x, i.x, atol=1e-6)
    trace = np.asarray(i.objective)[: int(i.iterations)]
    assert np.all(np.diff(trace) <= 1e-12)  # ISTA is a descent method


@pytest.mark.parametrize("adjoint", ["none", "unrolled", "implicit"])
def test_three_runner_modes_agree_forward(adjoint, x64):
    A, y = problem(jax.random.PRNGKey(3), jnp.float64)
    ref = lasso.fista(A, y, 0.2, max_iters=3000, tol=1e-12).x
    np.testing.assert_allclose(lasso.fista(A, y, 0.2, max_iters=3000, tol=1e-12, adjoint=adjoint).x, ref, atol=1e-10)


def test_gradients_unrolled_implicit_and_finite_differences_agree(x64):
    A, y = problem(jax.random.PRNGKey(4), jnp.float64, m=12, n=16, k=2)
    w = jnp.linspace(-1.0, 1.0, 16)

    def loss(y_, A_, adjoint):
        return jnp.sum(w * lasso.fista(A_, y_, 0.1, max_iters=4000, tol=1e-14, adjoint=adjoint).x)

    g_unrolled = jax.grad(loss, argnums=(0, 1))(y, A, "unrolled")
    g_implicit = jax.grad(loss, argnums=(0, 1))(y, A, "implicit")
    np.testing.assert_allclose(g_implicit[0], g_unrolled[0], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(g_implicit[1], g_unrolled[1], rtol=1e-5, atol=1e-8)
    eps = 1e-6
    rng = np.random.default_rng(0)
    for _ in range(3):  # directional central differences
        dy = jnp.asarray(rng.standard_normal(y.shape))
        dA = jnp.asarray(rng.standard_normal(A.shape))
        fd = (loss(y + eps * dy, A + eps * dA, "none") - loss(y - eps * dy, A - eps * dA, "none")) / (2 * eps)
        ad = jnp.vdot(g_implicit[0], dy) + jnp.vdot(g_implicit[1], dA)
        np.testing.assert_allclose(ad, fd, rtol=1e-4, atol=1e-8)


def test_zero_data_gives_zero_solution():
    A, _ = problem(jax.random.PRNGKey(5), jnp.float32)
    res = lasso.fista(A, jnp.zeros(A.shape[0]), 0.1)
    assert np.all(np.asarray(res.x) == 0) and bool(res.finite)


class TestFistaContract(ContractSuite):
    case = ContractCase(
        name="fista",
        fn=functools.partial(lasso.fista, lam=0.1, max_iters=300, tol=1e-5),
        make_inputs=problem,
        dtypes=(jnp.float32, jnp.float64, jnp.complex64, jnp.complex128),
        bad_inputs=[
            BadInput(args=lambda: (jnp.ones((3, 4)), jnp.ones(4)), match="y: expected shape"),
            BadInput(args=lambda: (jnp.ones(3), jnp.ones(3)), match="A: expected 2 dimensions"),
            BadInput(args=lambda: (jnp.ones((3, 4)), jnp.asarray([1.0, jnp.nan, 0.0])), match="y: contains NaN"),
            BadInput(args=lambda: (jnp.ones((3, 4)), jnp.ones(3)), kwargs={"adjoint": "magic"}, match="adjoint"),
        ],
        rtol=1e-3,
        atol=1e-4,
    )


# ----------------------------------------------------------------------------- solver objects
from tests.contract import SolverCase, SolverSuite  # noqa: E402


def _lasso_data(key, dtype):
    return problem(key, dtype)


def _lasso_case(name, solver_cls, solve_fn, dtypes=(jnp.float64,)):
    """The same LASSO problem (lam = 0.2) through a solver object and its solve function."""
    return SolverCase(
        name=name,
        make_solver=lambda n: solver_cls(0.2, max_iters=n, tol=0.0),
        solve=lambda n, A, y: solve_fn(A, y, 0.2, max_iters=n, tol=0.0),
        make_inputs=_lasso_data,
        dtypes=dtypes,
    )


class TestFistaSolver(SolverSuite):
    case = _lasso_case("FISTA", lasso.FISTA, lasso.fista, (jnp.float64, jnp.complex128, jnp.float32))


class TestIstaSolver(SolverSuite):
    case = _lasso_case("ISTA", lasso.ISTA, lasso.ista)


def test_grad_through_users_scan_matches_unrolled(x64):
    A, y = problem(jax.random.PRNGKey(3), jnp.float64)
    n = 30

    def by_hand(lam):
        solver = lasso.FISTA(lam, max_iters=n, tol=0.0)
        state = solver.init(A, y)
        state, _ = jax.lax.scan(lambda st, _: (solver.step(st, A, y), None), state, None, length=n)
        return jnp.sum(solver.result(state, A, y).x ** 2)

    def library(lam):
        return jnp.sum(lasso.fista(A, y, lam, max_iters=n, tol=0.0, adjoint="unrolled").x ** 2)

    np.testing.assert_allclose(jax.grad(by_hand)(0.3), jax.grad(library)(0.3), rtol=1e-10)


def test_adjoint_values_match_shorthands(x64):
    from jsparse.core import adjoint as adj

    A, y = problem(jax.random.PRNGKey(4), jnp.float64)
    f = lambda lam, a: jnp.sum(lasso.fista(A, y, lam, max_iters=200, tol=1e-10, adjoint=a).x)  # noqa: E731
    np.testing.assert_allclose(jax.grad(f)(0.3, adj.Unrolled()), jax.grad(f)(0.3, "unrolled"), rtol=1e-12)
    # block checkpointing changes memory, not values (200 steps in blocks of 7: a ragged last block)
    np.testing.assert_allclose(jax.grad(f)(0.3, adj.Unrolled(checkpoint_every=7)), jax.grad(f)(0.3, "unrolled"),
                               rtol=1e-12)
    np.testing.assert_allclose(jax.grad(f)(0.3, adj.Implicit("dense")), jax.grad(f)(0.3, "implicit"), rtol=1e-9)
    with pytest.raises(ValueError, match="checkpoint_every"):
        adj.Unrolled(checkpoint_every=0)
    with pytest.raises(ValueError, match="linear_solver"):
        adj.Implicit("qr")
