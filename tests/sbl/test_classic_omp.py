"""Classic SBL, OMP, Kronecker OMP and oracle LS against NumPy references."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse.core.kron import kron_dense
from jsparse.core.metrics import nmse
from jsparse.sbl import kron_omp, omp, oracle_ls, sbl
from jsparse.sbl.classic import dense_posterior
from jsparse.sbl.synthetic import dense_problem
from tests.sbl import _reference as ref
from tests.sbl.problems import small_problem


@pytest.mark.parametrize("complex_", [False, True])
def test_dense_posterior_matches_inverse(x64, complex_):
    rng = np.random.default_rng(0)
    H = rng.standard_normal((6, 9)) + (1j * rng.standard_normal((6, 9)) if complex_ else 0)
    y = rng.standard_normal(6) + (1j * rng.standard_normal(6) if complex_ else 0)
    g = rng.uniform(0.1, 2, 9)
    g[3] = 0.0
    mu, dsig, resid, dof = dense_posterior(jnp.asarray(y), jnp.asarray(H), jnp.asarray(g), 0.2)
    mu_r, dsig_r, _ = ref.dense_posterior(y, H, g, 0.2)
    np.testing.assert_allclose(mu, mu_r, atol=1e-12)
    np.testing.assert_allclose(dsig, dsig_r, atol=1e-12)
    np.testing.assert_allclose(resid, np.sum(np.abs(y - H @ mu_r) ** 2), rtol=1e-10)
    act = g > 0
    np.testing.assert_allclose(dof, np.sum(1 - dsig_r[act] / g[act]), rtol=1e-10)


@pytest.mark.parametrize("learn,dtype", [(True, jnp.float64), (False, jnp.complex128)])
def test_sbl_matches_numpy_reference(x64, learn, dtype):
    p = small_problem(jax.random.PRNGKey(4), dtype)
    H = kron_dense(p.factors)
    nv = None if learn else float(p.noise_var)
    res = sbl(p.y, H, noise_var=nv, max_iters=15, tol=0.0, prune=1e-3)
    x, g, s2 = ref.sbl_dense(np.asarray(p.y), np.asarray(H), nv, 15, 1e-3)
    # pinv (reference) vs Cholesky (ours): agreement to ~1e-7 relative after 15 iterations
    np.testing.assert_allclose(res.x, x, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.gammas[0], g, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(res.noise_var, s2, rtol=1e-9)


def test_sbl_recovers_on_gaussian_dictionary(x64):
    y, H, x, nv = dense_problem(jax.random.PRNGKey(0), 40, 80, 5, 40.0, dtype=jnp.float64)
    res = sbl(y, H)
    assert bool(res.converged)
    assert float(nmse(res.x, x)) < 1e-3


def test_omp_matches_numpy(x64):
    y, H, x, _ = dense_problem(jax.random.PRNGKey(1), 30, 60, 4, 30.0, dtype=jnp.float64)
    for atoms, tol in [(8, 1e-2), (12, 0.0)]:
        res = omp(y, H, max_atoms=atoms, tol=tol)
        np.testing.assert_allclose(res.x, ref.omp_dense(np.asarray(y), np.asarray(H), atoms, tol), atol=1e-9)
    noiseless = jnp.matmul(H, x)
    assert float(nmse(omp(noiseless, H, max_atoms=10, tol=1e-6).x, x)) < 1e-12


@pytest.mark.parametrize("m", [(4, 5, 4), (5, 6, 4)])
def test_kron_omp_matches_brute_force(x64, m):
    p = small_problem(jax.random.PRNGKey(2), m=m, snr_db=30.0)
    caps = (3, 4, 3)
    res = kron_omp(p.y, p.factors, max_atoms=caps, tol=1e-2)
    x, sets = ref.kron_omp_dense(np.asarray(p.y), [np.asarray(f) for f in p.factors], caps, 1e-2)
    np.testing.assert_allclose(res.x, x, atol=1e-8)
    for mask, s in zip(res.support, sets):
        assert set(np.flatnonzero(np.asarray(mask)).tolist()) == s


def test_kron_omp_noiseless_well_posed(x64):
    p = small_problem(jax.random.PRNGKey(0), n=(8, 8, 8), m=(8, 8, 8), snr_db=300.0)
    res = kron_omp(p.y, p.factors)
    assert float(nmse(res.x, p.x)) < 1e-12
    assert bool(res.converged)


def test_oracle_ls(x64):
    p = small_problem(jax.random.PRNGKey(3), jnp.complex128)
    H = np.asarray(kron_dense(p.factors))
    mask = np.asarray(ref.kron_all([np.asarray(s, float)[:, None] for s in p.supports]))[:, 0] > 0
    want = np.zeros(H.shape[1], complex)
    want[mask] = np.linalg.lstsq(H[:, mask], np.asarray(p.y), rcond=None)[0]
    np.testing.assert_allclose(oracle_ls(p.y, p.factors, p.supports), want, atol=1e-10)
    np.testing.assert_allclose(oracle_ls(p.y, jnp.asarray(H), jnp.asarray(mask)), want, atol=1e-10)


@pytest.mark.parametrize("learn,dtype", [(True, jnp.float64), (False, jnp.complex128)])
def test_sbl_kron_factors_same_iterates_as_dense(x64, learn, dtype):
    """sbl(y, factors) (structured E-step) runs the same iterates as sbl(y, kron_dense(factors))."""
    p = small_problem(jax.random.PRNGKey(5), dtype)
    nv = None if learn else float(p.noise_var)
    dense = sbl(p.y, kron_dense(p.factors), noise_var=nv, max_iters=15, tol=0.0, prune=1e-3)
    kron = sbl(p.y, p.factors, noise_var=nv, max_iters=15, tol=0.0, prune=1e-3)
    np.testing.assert_allclose(kron.x, dense.x, rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(kron.gammas[0], dense.gammas[0], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(kron.noise_var, dense.noise_var, rtol=1e-10)
