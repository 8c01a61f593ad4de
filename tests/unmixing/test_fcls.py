"""FCLS against an independent exact QP solve, on ill-conditioned and degenerate endmembers."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import nnls

from jsparse import unmixing


def correlated_problem(seed, *, bands=50, r=3, pixels=60, spread=0.03, noise=1e-3):
    """Strongly correlated smooth endmembers (cond(M) ~ 230 for seed 0), Dirichlet(0.5) abundances."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, bands)
    base = 0.4 + 0.2 * np.sin(2 * np.pi * t)
    M = np.stack([base * (1 + spread * np.sin((i + 1) * 3 * t + rng.uniform(0, 6))) for i in range(r)], 1)
    A = rng.dirichlet(0.5 * np.ones(r), pixels).T
    return M, np.maximum(M @ A + noise * rng.normal(size=(bands, pixels)), 0.0)


def qp_exact(M, Y):
    """Exact FCLS in float64: on every face of the simplex solve the KKT system; the best feasible wins."""
    R, N = M.shape[1], Y.shape[1]
    best, out = np.full(N, np.inf), np.zeros((R, N))
    for k in range(1, R + 1):
        for S in map(list, itertools.combinations(range(R), k)):
            K = np.block([[M[:, S].T @ M[:, S], np.ones((k, 1))], [np.ones((1, k)), np.zeros((1, 1))]])
            sol = np.linalg.lstsq(K, np.vstack([M[:, S].T @ Y, np.ones((1, N))]), rcond=None)[0][:k]
            A = np.zeros((R, N))
            A[S] = np.maximum(sol, 0)
            obj = 0.5 * np.sum((Y - M @ A) ** 2, axis=0)
            better = np.all(sol >= -1e-12, axis=0) & (obj < best)
            best, out[:, better] = np.where(better, obj, best), A[:, better]
    return out


def _fcls(Y, M, dtype):
    return unmixing.fcls(jnp.asarray(Y, dtype), jnp.asarray(M, dtype))


@pytest.mark.parametrize("seed,spread", [(0, 0.03), (1, 0.02)])  # cond(M) 232 and 365 (the second untuned)
def test_fcls_converges_on_correlated_endmembers(x64, seed, spread):
    M, Y = correlated_problem(seed, spread=spread)
    assert 200 < np.linalg.cond(M) < 400
    ref = qp_exact(M, Y)
    # An independent check of the reference: NNLS with the sum-to-one row at a large weight.
    big = 1e3
    Mb = np.vstack([M, big * np.ones((1, M.shape[1]))])
    np.testing.assert_allclose(nnls(Mb, np.append(Y[:, 0], big))[0], ref[:, 0], atol=1e-4)
    res = _fcls(Y, M, jnp.float64)  # default budget and tolerance
    assert bool(res.converged) and int(res.iterations) <= 10
    np.testing.assert_allclose(np.asarray(res.abundances), ref, atol=1e-9)
    with jax.enable_x64(False):
        res32 = _fcls(Y, M, jnp.float32)
        assert bool(res32.converged) and res32.abundances.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(res32.abundances), ref, atol=1e-4)


def test_fcls_repeated_endmember(x64):
    """A repeated endmember makes M^T M singular: the objective must still be the optimum."""
    M, Y = correlated_problem(2, spread=0.2)
    M[:, 2] = M[:, 1]
    res = _fcls(Y, M, jnp.float64)  # same shapes as above: no new compilation
    A = np.asarray(res.abundances)
    ref = qp_exact(M[:, :2], Y)
    obj = lambda A, M: 0.5 * np.sum((Y - M @ A) ** 2, axis=0)  # noqa: E731
    assert bool(res.converged) and np.all(A >= 0) and np.allclose(A.sum(0), 1.0, atol=1e-12)
    np.testing.assert_allclose(obj(A, M), obj(ref, M[:, :2]), rtol=1e-10, atol=1e-14)
