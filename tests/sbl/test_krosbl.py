"""KroSBL (SVD / AM / KSBL) against dense NumPy references on small problems."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse.core.kron import kron_dense
from jsparse.core.metrics import nmse, support_jaccard
from jsparse.sbl import krosbl
from jsparse.sbl._common import full_gamma, safe_eigh
from jsparse.sbl._estep import posterior_eig_m, posterior_eig_n
from jsparse.sbl._mstep import svd_mstep
from tests.sbl import _reference as ref
from tests.sbl.problems import small_problem


def _random_gammas(rng, dims, zero_some=True):
    gs = [rng.uniform(0.1, 2.0, n) for n in dims]
    if zero_some:
        gs[1][2] = 0.0  # a pruned entry
    return [jnp.asarray(g) for g in gs]


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("estep", [posterior_eig_m, posterior_eig_n])
def test_estep_matches_dense_posterior(x64, complex_, estep):
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (4, 5), (2, 3)]
    fs = [rng.standard_normal(s) + (1j * rng.standard_normal(s) if complex_ else 0) for s in shapes]
    y = rng.standard_normal(24) + (1j * rng.standard_normal(24) if complex_ else 0)
    gs = _random_gammas(rng, [4, 5, 3])
    s2 = 0.3
    H = np.asarray(kron_dense([jnp.asarray(f) for f in fs]))
    g = np.asarray(full_gamma(gs))
    mu, dsig, _ = ref.dense_posterior(y, H, g, s2)
    post = estep(jnp.asarray(y), [jnp.asarray(f) for f in fs], gs, s2)
    np.testing.assert_allclose(post.mu, mu, atol=1e-12)
    np.testing.assert_allclose(post.diag_sigma, dsig, atol=1e-12)
    np.testing.assert_allclose(post.resid_sq, np.sum(np.abs(y - H @ mu) ** 2), rtol=1e-10)
    act = g > 0
    np.testing.assert_allclose(post.dof, np.sum(1 - dsig[act] / g[act]), rtol=1e-10)


def test_svd_mstep_is_rank_one_fit(x64):
    rng = np.random.default_rng(1)
    a, b, c = rng.uniform(0, 1, 4), rng.uniform(0, 1, 5), rng.uniform(0, 1, 3)
    d = np.kron(a, np.kron(b, c))
    gs = svd_mstep(jnp.asarray(d), [4, 5, 3])
    np.testing.assert_allclose(full_gamma(gs), d, rtol=1e-10)  # exact on a rank-one d
    np.testing.assert_allclose([jnp.linalg.norm(gs[0]), jnp.linalg.norm(gs[1])], [1.0, 1.0], rtol=1e-12)
    noisy = d + 0.05 * rng.uniform(0, 1, d.shape)
    got = svd_mstep(jnp.asarray(noisy), [4, 5, 3])
    want = ref._svd_mstep(noisy, [4, 5, 3])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9)


@pytest.mark.parametrize("method", ["svd", "am", "ksbl"])
@pytest.mark.parametrize("learn", [False, True])
def test_matches_dense_reference_with_deletion(x64, method, learn):
    """Zeroing γ (fixed shapes, matrix-free) == deleting columns (the MATLAB way), iterate by iterate."""
    p = small_problem(jax.random.PRNGKey(3))
    nv = None if learn else float(p.noise_var)
    rel = {"svd": 1e-3, "am": 1e-2, "ksbl": 1e-2}[method]
    iters = 12
    res = krosbl(p.y, p.factors, method=method, noise_var=nv, max_iters=iters, tol=0.0, prune=rel)
    x, gams, s2 = ref.krosbl_dense(np.asarray(p.y), [np.asarray(f) for f in p.factors], method, nv, iters, rel)
    assert int(res.iterations) == iters
    np.testing.assert_allclose(res.x, x, rtol=1e-7, atol=1e-9)
    want = ref.kron_all([g[:, None] for g in gams])[:, 0]
    np.testing.assert_allclose(full_gamma(res.gammas), want, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(res.noise_var, s2, rtol=1e-9)


@pytest.mark.parametrize("method", ["svd", "am", "ksbl"])
def test_recovers_sparse_vector(x64, method):
    # i.i.d. N(0, 1) values on the Kronecker support: no near-zero products of Gaussians, which a
    # relative pruning threshold may legitimately drop.
    p = small_problem(jax.random.PRNGKey(0), n=(8, 8, 8), m=(6, 7, 8), snr_db=40.0, values="iid")
    res = krosbl(p.y, p.factors, method=method, noise_var=None)
    assert bool(res.converged)
    assert float(nmse(res.x, p.x)) < 1e-3
    assert float(support_jaccard(res.x, p.x)) == 1.0
    # learned noise variance within a factor 3 of the truth
    assert 1 / 3 < float(res.noise_var / p.noise_var) < 3


def test_complex_matches_dense_reference(x64):
    p = small_problem(jax.random.PRNGKey(5), jnp.complex128)
    assert p.y.dtype == jnp.complex128
    res = krosbl(p.y, p.factors, method="svd", noise_var=float(p.noise_var), max_iters=10, tol=0.0, prune=1e-3)
    x, _, _ = ref.krosbl_dense(np.asarray(p.y), [np.asarray(f) for f in p.factors], "svd", float(p.noise_var), 10, 1e-3)
    np.testing.assert_allclose(res.x, x, rtol=1e-7, atol=1e-9)


def test_two_and_four_factors(x64):
    for n, m in [((6, 7), (5, 6)), ((3, 4, 3, 4), (3, 3, 3, 3))]:
        p = small_problem(jax.random.PRNGKey(1), n=n, m=m, k=2, snr_db=30.0)
        res = krosbl(p.y, p.factors, method="svd", noise_var=float(p.noise_var), max_iters=8, tol=0.0)
        facs = [np.asarray(f) for f in p.factors]
        x, _, _ = ref.krosbl_dense(np.asarray(p.y), facs, "svd", float(p.noise_var), 8, 1e-3)
        np.testing.assert_allclose(res.x, x, rtol=1e-7, atol=1e-9)
        assert len(res.gammas) == len(n)


def test_float32_runs_and_recovers():
    p = small_problem(jax.random.PRNGKey(0), jnp.float32, n=(8, 8, 8), m=(6, 7, 8), snr_db=40.0, values="iid")
    res = krosbl(p.y, p.factors, method="svd")
    assert res.x.dtype == jnp.float32 and res.noise_var.dtype == jnp.float32
    assert float(nmse(res.x, p.x)) < 1e-2


def test_nmse_trace_matches_final(x64):
    p = small_problem(jax.random.PRNGKey(2))
    res = krosbl(p.y, p.factors, method="svd", noise_var=float(p.noise_var), max_iters=40, x_true=p.x)
    trace = res.trace
    k = int(res.iterations)
    assert trace.shape == (40,)
    np.testing.assert_allclose(trace[k - 1], nmse(res.x, p.x), rtol=1e-9)
    assert np.all(np.isnan(np.asarray(trace[k:])))


def test_trace_fn_is_nmse_trace_and_result_type_is_fixed(x64):
    """x_true is shorthand for trace_fn=nmse_trace(solver, x_true); without either, trace is None."""
    from jsparse import sbl as S

    p = small_problem(jax.random.PRNGKey(2))
    kw = dict(method="am", noise_var=float(p.noise_var), max_iters=12)
    plain = krosbl(p.y, p.factors, **kw)
    assert isinstance(plain, S.SBLResult) and plain.trace is None
    via_x = krosbl(p.y, p.factors, x_true=p.x, **kw)
    solver = S.KroSBL(method="am", noise_var=jnp.asarray(p.noise_var), max_iters=12)
    via_fn = krosbl(p.y, p.factors, trace_fn=S.nmse_trace(solver, p.x), **kw)
    # Equal to rounding: the two spellings compile to programs that differ in how the noise
    # variance enters (a constant or an argument), which may move the last bit.
    np.testing.assert_allclose(np.asarray(via_x.trace), np.asarray(via_fn.trace), rtol=1e-13, atol=0)
    np.testing.assert_allclose(np.asarray(plain.x), np.asarray(via_x.x), rtol=1e-13, atol=1e-300)
    with pytest.raises(ValueError, match="trace_fn"):
        krosbl(p.y, p.factors, x_true=p.x, trace_fn=S.nmse_trace(solver, p.x), **kw)


def test_safe_eigh_gradient_on_degenerate_matrix(x64):
    """A rank-deficient (pruned) factor: jnp.linalg.eigh's derivative is NaN/huge, ours is exact."""
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.standard_normal((4, 6)))
    gam = jnp.asarray([1.0, 0.5, 0.0, 0.0, 0.0, 0.0])  # rank 2 -> two zero eigenvalues... and more

    def f(hh):  # a spectral function: tr((1 + A)^{-1}) through eigenvalues AND vectors
        a = (hh * gam[None, :]) @ hh.T
        w, v = safe_eigh(a)
        return jnp.sum((v * (1.0 / (1.0 + w))[None, :]) @ v.T)

    g = jax.grad(f)(h)
    want = jax.grad(lambda hh: jnp.sum(jnp.linalg.inv(jnp.eye(4) + (hh * gam[None, :]) @ hh.T)))(h)
    np.testing.assert_allclose(g, want, rtol=1e-8, atol=1e-10)
