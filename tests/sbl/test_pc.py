"""PC-KroSBL and PC-SBL against dense NumPy re-implementations (with column deletion, scipy NNLS)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from jsparse.core.kron import kron_dense
from jsparse.sbl import irs, pc
from jsparse.sbl._mstep import coupled_update
from jsparse.sbl.classic import dense_posterior
from tests.contract import BadInput, ContractCase, ContractSuite

DIMS, ROWS = (6, 4, 6), (4, 3, 5)


def block_problem(key, dtype, dims=DIMS, rows=ROWS, snr_db=25.0):
    """Gaussian factors, x = x_1 ⊗ x_2 ⊗ x_3 with blocks of 2 contiguous entries on factors 0 and 2."""
    keys = jax.random.split(key, 8)
    cplx = jnp.issubdtype(dtype, jnp.complexfloating)
    rdt = jnp.finfo(dtype).dtype

    def draw(k, shape):
        if cplx:
            kr, ki = jax.random.split(k)
            z = jax.lax.complex(jax.random.normal(kr, shape, rdt), jax.random.normal(ki, shape, rdt))
            return (z / float(np.sqrt(2))).astype(dtype)
        return jax.random.normal(k, shape, rdt)

    factors = tuple(draw(keys[i], (m, n)) for i, (m, n) in enumerate(zip(rows, dims)))
    parts = []
    for i, n in enumerate(dims):
        start = jax.random.randint(keys[3 + i], (), 0, n - 1)
        width = 1 if i == 1 else 2
        mask = (jnp.arange(n) >= start) & (jnp.arange(n) < start + width)
        parts.append(jnp.where(mask, 1.0 + jnp.abs(draw(keys[6], (n,))), 0).astype(dtype))
    x = kron_dense([p[:, None] for p in parts])[:, 0]
    clean = kron_dense(factors) @ x
    noise_var = (jnp.mean(jnp.abs(clean) ** 2) / 10 ** (snr_db / 10)).astype(rdt)
    y = clean + jnp.sqrt(noise_var).astype(dtype) * draw(keys[7], clean.shape)
    return y, factors, x, noise_var


# ----------------------------------------------------------------------------- dense references
def _np_posterior(y, h, gam, sigma2):
    cov = sigma2 * np.eye(h.shape[0]) + (h * gam) @ h.conj().T
    inv = np.linalg.inv(cov)
    mu = gam * (h.conj().T @ inv @ y)
    diag = gam - gam**2 * np.real(np.einsum("mn,mk,kn->n", h.conj(), inv, h))
    return mu, diag


def _kron(vs):
    out = vs[0]
    for v in vs[1:]:
        out = np.kron(out, v)
    return out


def np_pc_krosbl(y, factors, sigma2, beta, coupled, rel, r_abs, max_iters, tol, inner_max=9, inner_tol=1e-4,
                 floor=1e-5):
    """The reference algorithm with pruned columns *deleted*, a dense posterior and scipy's NNLS."""
    dims = [f.shape[1] for f in factors]
    cm = [pc.np_coupling(n, beta) if i in coupled else np.eye(n) for i, n in enumerate(dims)]
    g = [c @ np.ones(n) for c, n in zip(cm, dims)]
    keep = [np.arange(n) for n in dims]

    def full(gs, ks):
        out = np.zeros(dims)
        out[np.ix_(*ks)] = _kron(gs).reshape([len(k) for k in ks])
        return out.ravel()

    def prune(gs, ks, cs):
        for i in range(3):
            idx = np.nonzero(gs[i] >= max(rel[i] * gs[i].max(), r_abs))[0]
            gs[i], ks[i], cs[i] = gs[i][idx], ks[i][idx], cs[i][np.ix_(idx, idx)]

    it = 0
    for it in range(1, max_iters + 1):
        old = full(g, keep)
        prune(g, keep, cm)
        h = _kron([f[:, k] for f, k in zip(factors, keep)])
        mu, diag = _np_posterior(y, h, _kron(g), sigma2)
        d = (diag + np.abs(mu) ** 2).reshape([len(k) for k in keep])
        for _ in range(inner_max):
            prev = _kron(g)
            for i in range(3):
                others = [j for j in range(3) if j != i]
                w = d.copy()
                for j in others:
                    shape = [1, 1, 1]
                    shape[j] = -1
                    w = w / g[j].reshape(shape)
                t = w.mean(axis=tuple(others))
                g[i] = floor + cm[i] @ scipy.optimize.nnls(cm[i], t)[0] if i in coupled else t
            n0, n1 = np.linalg.norm(g[0]), np.linalg.norm(g[1])
            g = [g[0] / n0, g[1] / n1, g[2] * n0 * n1]
            if np.linalg.norm(_kron(g) - prev) / np.linalg.norm(prev) <= inner_tol:
                break
        if np.linalg.norm(full(g, keep) - old) / np.linalg.norm(old) <= tol:
            break
    prune(g, keep, cm)
    h = _kron([f[:, k] for f, k in zip(factors, keep)])
    mu, _ = _np_posterior(y, h, _kron(g), sigma2)
    x = np.zeros(dims, complex)
    x[np.ix_(*keep)] = mu.reshape([len(k) for k in keep])
    return x.ravel(), full(g, keep), it


def _shift(v, eta):
    return v + eta * (np.concatenate([v[1:], [0]]) + np.concatenate([[0], v[:-1]]))


def np_pc_sbl(y, h, sigma2, eta, max_iters, tol, a=0.5, b=1e-4):
    mu, var = _np_posterior(y, h, np.ones(h.shape[1]), sigma2)
    it = 0
    for it in range(1, max_iters + 1):
        old = mu
        alpha = (a + 0.5) / (0.5 * (_shift(np.abs(mu) ** 2, eta) + _shift(var, eta)) + b)
        alpha[alpha > 1e3 * alpha.min()] = 1e10
        mu, var = _np_posterior(y, h, 1.0 / _shift(alpha, eta), sigma2)
        if np.linalg.norm(mu - old) / np.linalg.norm(old) <= tol:
            break
    return mu, it


pc.np_coupling = lambda n, beta: np.eye(n) + beta * (np.eye(n, k=1) + np.eye(n, k=-1))


# ----------------------------------------------------------------------------- tests
def test_coupling_matrix():
    c = np.asarray(pc.coupling_matrix(5, 0.8))
    np.testing.assert_allclose(c, pc.np_coupling(5, 0.8), rtol=1e-7)
    assert c[0, -1] == 0  # no wrap-around


def test_coupled_update_matches_scipy_on_kept_entries(x64):
    rng = np.random.default_rng(0)
    t = np.abs(rng.normal(size=10)) * (rng.random(10) < 0.6)
    mask = np.ones(10, bool)
    mask[[0, 4, 5]] = False
    cm = pc.np_coupling(10, 0.8)
    got = np.asarray(coupled_update(jnp.asarray(t), jnp.asarray(mask), jnp.asarray(cm), 1e-5))
    sub = cm[np.ix_(mask, mask)]
    want = np.zeros(10)
    want[mask] = 1e-5 + sub @ scipy.optimize.nnls(sub, t[mask])[0]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("beta,max_iters", [(0.8, 6), (0.5, 40)])
def test_pc_krosbl_matches_dense_reference(x64, beta, max_iters):
    y, factors, _, nv = block_problem(jax.random.PRNGKey(3), jnp.complex128)
    rel, r_abs = (1e-2, 1e-1, 1e-2), 1e-4
    got = pc.pc_krosbl(y, factors, beta=beta, noise_var=nv, max_iters=max_iters, prune=rel, prune_abs=r_abs)
    x_ref, g_ref, it_ref = np_pc_krosbl(
        np.asarray(y), [np.asarray(f) for f in factors], float(nv), beta, (0, 2), rel, r_abs, max_iters, 1e-4
    )
    assert int(got.iterations) == it_ref
    np.testing.assert_allclose(np.asarray(pc.C.full_gamma(got.gammas)), g_ref, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(np.asarray(got.x), x_ref, rtol=1e-7, atol=1e-10)


def test_pc_sbl_matches_dense_reference_dense_and_kron(x64):
    y, factors, _, nv = block_problem(jax.random.PRNGKey(4), jnp.complex128)
    h = kron_dense(factors)
    ref, it_ref = np_pc_sbl(np.asarray(y), np.asarray(h), float(nv), 0.9, 30, 1e-4)
    dense = pc.pc_sbl(y, h, beta=0.9, noise_var=nv, max_iters=30)
    kron = pc.pc_sbl(y, list(factors), beta=0.9, noise_var=nv, max_iters=30)
    assert int(dense.iterations) == it_ref == int(kron.iterations)
    np.testing.assert_allclose(np.asarray(dense.x), ref, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(np.asarray(kron.x), ref, rtol=1e-7, atol=1e-10)


def test_kron_dense_posterior_matches_dense(x64):
    y, factors, _, _ = block_problem(jax.random.PRNGKey(5), jnp.complex128)
    v = jax.random.uniform(jax.random.PRNGKey(6), (int(np.prod(DIMS)),), jnp.float64)
    got = pc.kron_dense_posterior(y, factors, v, 0.3)
    want = dense_posterior(y, kron_dense(factors), v, 0.3)
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-11)


def test_pc_krosbl_recovers_irs_channel():
    """Paper-size IRS problem at 20 dB: PC-KroSBL (β = 0.8) far below -15 dB, and beats AM-style β = 0."""
    p = irs.simulate(jax.random.PRNGKey(11), 20.0)
    res = pc.pc_krosbl(p.y, p.factors, beta=0.8, noise_var=p.noise_var)
    nmse_db = 10 * np.log10(float(jnp.mean(irs.channel_nmse(res.x, p))))
    assert bool(res.converged) and nmse_db < -15, nmse_db
    assert res.x.dtype == jnp.complex64


def test_learned_noise_is_close(x64):
    y, factors, _, nv = block_problem(jax.random.PRNGKey(7), jnp.complex128, snr_db=15.0)
    res = pc.pc_krosbl(y, factors, noise_var=None, max_iters=100)
    assert 0.3 < float(res.noise_var) / float(nv) < 3


def test_unrolled_and_implicit_gradients_finite(x64):
    y, factors, _, nv = block_problem(jax.random.PRNGKey(8), jnp.complex128)

    def loss(y_, adjoint):
        return jnp.sum(jnp.abs(pc.pc_krosbl(y_, factors, noise_var=nv, max_iters=4, adjoint=adjoint).x) ** 2)

    g_u = jax.grad(loss)(y, "unrolled")
    g_i = jax.grad(loss)(y, "implicit")
    assert np.all(np.isfinite(np.asarray(g_u))) and np.all(np.isfinite(np.asarray(g_i)))
    assert float(jnp.linalg.norm(g_u)) > 0


_Y, _F, _, _NV = block_problem(jax.random.PRNGKey(0), jnp.complex64)
_Y, _F = np.asarray(_Y), tuple(np.asarray(f) for f in _F)
PC_BAD = [
    BadInput(args=lambda: (_Y[:-1], *_F, _NV), match="y"),  # dictionary sizes do not match y
    BadInput(args=lambda: (_Y, _F[0][:-1], _F[1], _F[2], _NV), match="y"),
    BadInput(args=lambda: (_Y, _F[0], _F[1][0], _F[2], _NV), match=r"factors\[1\]"),
    BadInput(args=lambda: (_Y, *_F, _NV), kwargs={"beta": 1.0}, match="beta"),
    BadInput(args=lambda: (_Y, *_F, _NV), kwargs={"beta": -0.1}, match="beta"),
    BadInput(args=lambda: (_Y, *_F, _NV), kwargs={"coupled": (0, 3)}, match="coupled"),
    BadInput(args=lambda: (_Y, *_F, _NV), kwargs={"prune": (1e-2, 1e-2)}, match="prune"),
    BadInput(args=lambda: (_Y, *_F, -1.0), match="noise_var"),
]


def _pc_fn(y, f1, f2, f3, nv, **kw):
    return pc.pc_krosbl(y, (f1, f2, f3), noise_var=nv, **{"max_iters": 10, **kw})


def _pc_inputs(key, dtype):
    y, f, _, nv = block_problem(key, dtype)
    return (y, *f, nv)


class TestPCKroSBLContract(ContractSuite):
    case = ContractCase(
        name="pc_krosbl",
        fn=_pc_fn,
        make_inputs=_pc_inputs,
        dtypes=(jnp.float32, jnp.float64, jnp.complex64, jnp.complex128),
        bad_inputs=PC_BAD,
        rtol=2e-3,
        atol=2e-4,
    )


def _pcsbl_fn(y, f1, f2, f3, nv, **kw):
    return pc.pc_sbl(y, [f1, f2, f3], noise_var=nv, **{"max_iters": 10, **kw})


class TestPCSBLContract(ContractSuite):
    case = ContractCase(
        name="pc_sbl",
        fn=_pcsbl_fn,
        make_inputs=_pc_inputs,
        dtypes=(jnp.float64, jnp.complex64, jnp.complex128),
        bad_inputs=[
            BadInput(args=lambda: (_Y[:-1], *_F, _NV), match="y"),
            BadInput(args=lambda: (_Y, *_F, _NV), kwargs={"beta": 1.5}, match="beta"),
            BadInput(args=lambda: (_Y, *_F, _NV), kwargs={"b": 0.0}, match="b"),
        ],
        rtol=2e-3,
        atol=2e-4,
    )


def test_csbl_kron_matches_dense_classic_sbl(x64):
    from jsparse.sbl import sbl

    y, factors, _, nv = block_problem(jax.random.PRNGKey(9), jnp.complex128)
    got = pc.csbl_kron(y, factors, noise_var=nv, prune=1e-4, max_iters=30)
    want = sbl(y, kron_dense(factors), noise_var=nv, prune=1e-4, max_iters=30)
    assert int(got.iterations) == int(want.iterations)
    np.testing.assert_allclose(np.asarray(got.gammas[0]), np.asarray(want.gammas[0]), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(np.asarray(got.x), np.asarray(want.x), rtol=1e-7, atol=1e-10)
    with pytest.raises(ValueError, match="noise_var"):
        pc.csbl_kron(y, factors, noise_var=0.0)


def _csbl_fn(y, f1, f2, f3, nv, **kw):
    return pc.csbl_kron(y, (f1, f2, f3), noise_var=nv, **{"max_iters": 10, **kw})


class TestCSBLKronContract(ContractSuite):
    case = ContractCase(
        name="csbl_kron",
        fn=_csbl_fn,
        make_inputs=_pc_inputs,
        dtypes=(jnp.float64, jnp.complex64, jnp.complex128),
        bad_inputs=[
            BadInput(args=lambda: (_Y[:-1], *_F, _NV), match="y"),
            BadInput(args=lambda: (_Y, *_F, _NV), kwargs={"prune": 1.0}, match="prune"),
        ],
        rtol=2e-3,
        atol=2e-4,
    )


def test_krosbl_method_pc_is_pc_krosbl():
    """`sbl.krosbl(..., method="pc")` is `pc.pc_krosbl` with its defaults (β = 0.8, coupled (0, 2))."""
    from jsparse import sbl

    y, factors, _, nv = block_problem(jax.random.PRNGKey(3), jnp.complex64)
    via_krosbl = sbl.krosbl(y, factors, method="pc", noise_var=nv, max_iters=5)
    direct = pc.pc_krosbl(y, factors, beta=0.8, coupled=(0, 2), noise_var=nv, max_iters=5)
    np.testing.assert_array_equal(np.asarray(via_krosbl.x), np.asarray(direct.x))
    with pytest.raises(ValueError, match="beta"):
        pc.pc_krosbl(y, factors, beta=1.0, noise_var=nv)
    with pytest.raises(TypeError, match="beta"):  # β is PC-KroSBL's setting, not krosbl's
        sbl.krosbl(y, factors, method="pc", beta=0.5, noise_var=nv)
