"""NNLS (Lawson–Hanson, jit-able) against scipy.optimize.nnls, plus its derivative and contract."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from jsparse.sbl import nnls as N
from jsparse.sbl.pc import coupling_matrix
from tests.contract import BadInput, ContractCase, ContractSuite


@pytest.mark.parametrize("shape", [(12, 5), (5, 12), (18, 18), (30, 7)])
def test_matches_scipy_float64(x64, shape):
    rng = np.random.default_rng(sum(shape))
    solve = jax.jit(N.nnls)
    for _ in range(20):
        a, b = rng.normal(size=shape), rng.normal(size=shape[0])
        ref, rnorm = scipy.optimize.nnls(a, b)
        got = solve(jnp.asarray(a), jnp.asarray(b))
        assert bool(got.converged)
        np.testing.assert_allclose(np.asarray(got.x), ref, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(float(got.residual_norm), rnorm, rtol=1e-9, atol=1e-12)
        assert np.all(np.asarray(got.x) >= 0)


@pytest.mark.parametrize("beta", [0.5, 0.8])
def test_coupling_systems_match_scipy(x64, beta):
    """The PC-KroSBL use: C_β (indefinite for β > 0.5) against nonnegative targets with zeros."""
    c = np.asarray(coupling_matrix(18, beta, jnp.float64))
    rng = np.random.default_rng(1)
    for _ in range(20):
        t = np.abs(rng.normal(size=18)) * (rng.random(18) < 0.4)
        ref, _ = scipy.optimize.nnls(c, t)
        got = N.nnls(jnp.asarray(c), jnp.asarray(t))
        np.testing.assert_allclose(np.asarray(got.x), ref, rtol=1e-9, atol=1e-12)


def test_float32_close_to_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(15, 8)).astype(np.float32), rng.normal(size=15).astype(np.float32)
    ref, _ = scipy.optimize.nnls(a.astype(np.float64), b.astype(np.float64))
    got = N.nnls(jnp.asarray(a), jnp.asarray(b))
    assert got.x.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got.x), ref, rtol=1e-4, atol=1e-5)


def test_kkt_conditions_hold(x64):
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(10, 10)), rng.normal(size=10)
    x = np.asarray(N.nnls(jnp.asarray(a), jnp.asarray(b)).x)
    w = a.T @ (b - a @ x)
    assert np.all(w <= 1e-10)  # dual feasibility
    np.testing.assert_allclose(w[x > 0], 0, atol=1e-10)  # complementary slackness


def test_gradient_matches_finite_differences(x64):
    rng = np.random.default_rng(4)
    a, b = jnp.asarray(rng.normal(size=(9, 6))), jnp.asarray(rng.normal(size=9))
    weights = jnp.arange(1.0, 7.0)

    def loss(a_, b_):
        return jnp.sum(weights * N.nnls(a_, b_).x ** 2)

    ga, gb = jax.grad(loss, argnums=(0, 1))(a, b)
    eps = 1e-6
    fd_b = np.array([(loss(a, b + eps * e) - loss(a, b - eps * e)) / (2 * eps) for e in np.eye(9)])
    np.testing.assert_allclose(np.asarray(gb), fd_b, rtol=1e-5, atol=1e-8)
    e = jnp.zeros_like(a).at[2, 3].set(eps)
    fd = (loss(a + e, b) - loss(a - e, b)) / (2 * eps)
    np.testing.assert_allclose(float(ga[2, 3]), float(fd), rtol=1e-5, atol=1e-8)
    assert float(jnp.sum(jnp.abs(gb))) > 0  # the active set is not empty: the check is not vacuous


def _inputs(key, dtype):
    ka, kb = jax.random.split(key)
    return jax.random.normal(ka, (10, 6), dtype), jax.random.normal(kb, (10,), dtype)


class TestNNLSContract(ContractSuite):
    case = ContractCase(
        name="nnls",
        fn=N.nnls,
        make_inputs=_inputs,
        dtypes=(jnp.float32, jnp.float64),
        bad_inputs=[
            BadInput(args=lambda: (jnp.ones((4, 3)), jnp.ones(5)), match="b"),
            BadInput(args=lambda: (jnp.ones(4), jnp.ones(4)), match="a"),
            BadInput(args=lambda: (jnp.ones((4, 3), jnp.complex64), jnp.ones(4, jnp.complex64)), match="a"),
        ],
        rtol=1e-4,
        atol=1e-5,
    )
