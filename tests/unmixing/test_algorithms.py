"""Correctness of the unmixing algorithms against independent references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import nnls

from jsparse import unmixing
from jsparse.unmixing import metrics
from tests.unmixing.helpers import R, init_inputs, small_scene


# ---------------------------------------------------------------- simplex projection and FCLS
def _proj_ref(v, total):
    # Bisection on the threshold theta of x = max(v - theta, 0), sum x = total.
    lo, hi = v.min() - total, v.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.maximum(v - mid, 0).sum() > total else (lo, mid)
    return np.maximum(v - 0.5 * (lo + hi), 0)


def test_project_simplex_matches_bisection(x64):
    rng = np.random.default_rng(0)
    V = rng.normal(size=(5, 7)) * 3
    out = np.asarray(unmixing.project_simplex(jnp.asarray(V), 2.5, axis=0))
    ref = np.stack([_proj_ref(V[:, j], 2.5) for j in range(7)], axis=1)
    np.testing.assert_allclose(out, ref, atol=1e-10)


def test_fcls_matches_scipy_nnls_with_sum_to_one_row(x64):
    sc = small_scene(jax.random.PRNGKey(1), jnp.float64, snr_db=25.0)
    Y, M = np.asarray(sc.Y), np.asarray(sc.endmembers)
    res = unmixing.fcls(Y, M, max_iters=3000, tol=1e-13)
    # Reference: NNLS on [M; big * 1^T] a = [y; big], whose solution tends to the FCLS one.
    big = 1e4
    Mb = np.vstack([M, big * np.ones((1, M.shape[1]))])
    ref = np.stack([nnls(Mb, np.append(Y[:, n], big))[0] for n in range(Y.shape[1])], axis=1)
    np.testing.assert_allclose(np.asarray(res.abundances), ref, atol=2e-5)
    np.testing.assert_allclose(np.asarray(res.abundances).sum(0), 1.0, atol=1e-10)


# ---------------------------------------------------------------- multiplicative updates vs NumPy
def _np_mu(Y, M, A, iters, *, loss, lam, p, delta, uniform):
    """Dense NumPy reference written with the delta-augmented matrices and an explicit L x L D."""
    L, N = Y.shape
    eps = 1e-6 * np.sqrt(np.sum(Y * Y) / L)
    tau = 1.0
    if loss == "l21":
        tau = 1.0 / np.mean(1.0 / np.sqrt(np.sum((Y - M @ A) ** 2, axis=1) + eps**2))
    floor = 1e-9
    for _ in range(iters):
        M = M * (Y @ A.T) / (M @ A @ A.T + 1e-30)
        if loss == "l21":
            D = np.diag(tau / np.sqrt(np.sum((Y - M @ A) ** 2, axis=1) + eps**2))
        else:
            D = np.eye(L)
        Yb = np.vstack([Y, delta * np.ones((1, N))])
        Mb = np.vstack([M, delta * np.ones((1, M.shape[1]))])
        Db = np.block([[D, np.zeros((L, 1))], [np.zeros((1, L)), np.ones((1, 1))]])
        sp = lam * p * np.maximum(A, floor) ** (p - 1) if uniform else 0.0
        A = A * (Mb.T @ Db @ Yb) / (Mb.T @ Db @ Mb @ A + sp + 1e-30)
    return M, A


@pytest.mark.parametrize(
    "method,kw",
    [
        ("nmf", dict(loss="fro", lam=0.0, p=1.0, uniform=False)),
        ("l12_nmf", dict(loss="fro", lam=0.3, p=0.5, uniform=True)),
        ("l21_nmf", dict(loss="l21", lam=0.3, p=0.5, uniform=True)),
    ],
)
def test_mu_updates_match_numpy(x64, method, kw):
    Y, M0, A0 = (np.asarray(a) for a in init_inputs(jax.random.PRNGKey(2), jnp.float64))
    extra = {} if method == "nmf" else {"lam": kw["lam"]}
    res = getattr(unmixing, method)(Y, R, init_endmembers=M0, init_abundances=A0, init_floor=0.0,
                                    max_iters=6, tol=0.0, **extra)
    M, A = _np_mu(Y, M0, A0, 6, delta=15.0, **kw)
    np.testing.assert_allclose(np.asarray(res.endmembers), M, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(res.abundances), A / A.sum(0), rtol=1e-9)


# ---------------------------------------------------------------- objective never increases
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("method", ["rrlbs", "l21_nmf", "l12_nmf", "nmf"])
def test_objective_non_increasing(method, dtype):
    with jax.enable_x64(dtype == "float64"):
        Y, M0, A0 = init_inputs(jax.random.PRNGKey(3), jnp.dtype(dtype))
        sc = small_scene(jax.random.PRNGKey(3), jnp.dtype(dtype), outlier_fraction=0.2, snr_db=25.0)
        fn = getattr(unmixing, method)
        res = fn(sc.Y, R, init_endmembers=M0, init_abundances=A0, max_iters=150, tol=0.0)
        obj = np.asarray(res.objective, np.float64)
    assert res.objective.dtype == jnp.dtype(dtype)
    assert np.all(np.isfinite(obj)) and obj.shape == (150,)
    slack = 2e-6 if dtype == "float32" else 1e-12  # rounding of the objective itself
    rises = np.diff(obj) / np.abs(obj[:-1])
    assert rises.max() <= slack, f"objective rose by {rises.max():.3g} (relative)"
    assert obj[-1] < obj[0]


# ---------------------------------------------------------------- VCA, recovery, guidance map
def test_vca_finds_the_pure_pixels(x64):
    sc = small_scene(jax.random.PRNGKey(4), jnp.float64, snr_db=None, shape=(12, 12), pure=0.3)
    for seed in range(3):
        idx = np.asarray(unmixing.vca_indices(sc.Y, R, jax.random.PRNGKey(seed)))
        A = np.asarray(sc.abundances)[:, idx]
        assert np.all(A.max(axis=0) > 1 - 1e-9), "a chosen pixel is not pure"
        assert sorted(A.argmax(axis=0)) == list(range(R)), "two vertices of the same endmember"


@pytest.mark.parametrize("method", ["rrlbs", "l21_nmf", "vca"])  # nmf / l12_nmf: same engine, checked vs NumPy
def test_recovery_on_noiseless_scene(x64, method):
    sc = small_scene(jax.random.PRNGKey(5), jnp.float64, snr_db=None, shape=(12, 12), pure=0.3)
    kw = {} if method == "vca" else {"max_iters": 200, "init_floor": 1e-3}
    res = getattr(unmixing, method)(sc.Y, R, key=jax.random.PRNGKey(0), **kw)
    ev = metrics.evaluate(res.endmembers, res.abundances, sc.endmembers, sc.abundances, sc.Y)
    assert ev.mean_sad < 0.02, ev
    assert ev.mean_rmse < 0.03, ev
    A = np.asarray(res.abundances)
    assert A.min() >= 0 and np.allclose(A.sum(0), 1.0, atol=1e-9)


def test_learned_map_favours_pure_pixels(x64):
    sc = small_scene(jax.random.PRNGKey(6), jnp.float64, snr_db=30.0, shape=(12, 12), pure=0.3)
    res = unmixing.rrlbs(sc.Y, R, key=jax.random.PRNGKey(0), max_iters=200)
    h = np.asarray(res.guidance)
    purity = 1 - np.asarray(sc.mixing)
    assert np.isclose(h.sum(), h.size)  # budget: mean 1
    assert (h == 0).any(), "the learned map should be sparse"
    assert np.corrcoef(h, purity)[0, 1] > 0.5


def test_rrlbs_vca_init_jit_vmap():
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    Ys = jnp.stack([small_scene(k, jnp.float32).Y for k in keys])
    fn = lambda Y, k: unmixing.rrlbs(Y, R, key=k, max_iters=8, fcls_iters=10)  # noqa: E731
    batched = jax.jit(jax.vmap(fn))(Ys, keys)
    single = fn(Ys[1], keys[1])
    np.testing.assert_allclose(np.asarray(batched.abundances[1]), np.asarray(single.abundances), atol=1e-4)


def test_unrolled_adjoint_matches_and_differentiates(x64):
    Y, M0, A0 = init_inputs(jax.random.PRNGKey(8), jnp.float64)
    kw = dict(init_endmembers=M0, init_abundances=A0, max_iters=5, tol=0.0)
    a = unmixing.rrlbs(Y, R, **kw)
    b = unmixing.rrlbs(Y, R, adjoint="unrolled", **kw)
    np.testing.assert_allclose(np.asarray(a.abundances), np.asarray(b.abundances), rtol=1e-10)
    g = jax.grad(lambda y: jnp.sum(unmixing.rrlbs(y, R, adjoint="unrolled", **kw).endmembers))(Y)
    assert np.all(np.isfinite(np.asarray(g)))


def test_bad_settings_raise():
    Y, M0, A0 = init_inputs(jax.random.PRNGKey(0), jnp.float32)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="p"):
        unmixing.rrlbs(Y, R, key=key, p=0.0)
    with pytest.raises(ValueError, match="adjoint"):
        unmixing.rrlbs(Y, R, key=key, adjoint="implicit")
    with pytest.raises(ValueError, match="init_endmembers"):
        unmixing.rrlbs(Y, R, init_endmembers=M0[:, :2], init_abundances=A0[:2])
    with pytest.raises(ValueError, match="map_form"):
        unmixing.rrlbs(Y, R, key=key, map_form="bogus")
    with pytest.raises(ValueError, match="key"):
        unmixing.rrlbs(Y, R)
    # clip_negative turns the error into clipping.
    res = unmixing.nmf(Y.at[0, 0].set(-1.0), R, init_endmembers=M0, init_abundances=A0, max_iters=8,
                       clip_negative=True)
    assert np.all(np.isfinite(np.asarray(res.abundances)))
