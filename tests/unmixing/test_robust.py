"""The robust (noise-whitened) initialisation: HySime band noise vs explicit regressions, and
outlier-band detection / whitened VCA on a scene with corrupted bands.

Scenes are built in NumPy (no synthetic-generator compile): Y = M A + noise, with pure pixels,
and a few bands replaced by heavy clipped noise."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse import unmixing
from jsparse.core import metrics as core_metrics
from jsparse.unmixing import robust, synthetic
from jsparse.unmixing.mu_solver import solve_mu

L_, N_, R_ = 40, 150, 3


def _scene(seed, *, noise=1e-3, bad=(3, 17, 29, 35), kind="noise"):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, L_)[:, None]
    M = 0.3 + 0.25 * np.sin(2 * np.pi * (x * rng.uniform(0.5, 1.5, R_) + rng.uniform(0, 1, R_)))
    A = rng.dirichlet(np.ones(R_), N_).T
    A[:, :R_] = np.eye(R_)  # pixels 0..R-1 are pure
    Y = M @ A + noise * rng.normal(size=(L_, N_))
    mask = np.zeros(L_, bool)
    mask[list(bad)] = True
    if kind == "uniform":  # replaced by U(0, 3 max Y)
        Y[mask] = 3.0 * Y.max() * rng.uniform(size=(mask.sum(), N_))
    else:
        Y[mask] = np.maximum(Y[mask] + 0.5 * Y.max() * rng.normal(size=(mask.sum(), N_)), 0.0)
    return np.maximum(Y, 0.0), M, A, mask


def _clean_band_sad(M, T, good):
    M, T = np.asarray(M)[good], T[good]
    order = core_metrics.hungarian_match(np.asarray(core_metrics.sad_matrix(M, T))).rows
    return float(np.mean(np.asarray(core_metrics.sad(M[:, order], T))))


def test_band_noise_matches_explicit_regressions(x64):
    # Reference: for every band, least squares of that band on all the other bands (N x (L-1)).
    Y = _scene(0, noise=1e-2, bad=())[0]
    ref = []
    for band in range(L_):
        others = np.delete(Y, band, axis=0).T
        coef = np.linalg.lstsq(others, Y[band], rcond=None)[0]
        ref.append(np.sqrt(np.mean((Y[band] - others @ coef) ** 2)))
    got = np.asarray(robust.band_noise(jnp.asarray(Y), ridge=1e-12))
    np.testing.assert_allclose(got, np.asarray(ref), rtol=1e-4)


def test_whitening_flags_the_corrupted_bands():
    # float32 in the default pass, float64 in the JAX_ENABLE_X64=1 pass (ridge differs per dtype).
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    Y, _, _, bad = _scene(1)
    s = robust.whitening_scales(jnp.asarray(Y, dtype))
    assert s.dtype == jnp.dtype(dtype)
    s = np.asarray(s)
    # Every corrupted band is scaled down far below every clean band.
    assert s[bad].max() < 0.1 * s[~bad].min(), (s[bad], s[~bad].min())


def test_whitened_vca_ignores_corrupted_bands(x64):
    Y, M_true, _, bad = _scene(2, noise=0.0)
    good = ~bad
    for seed in range(2):
        res = unmixing.vca(jnp.asarray(Y), R_, key=jax.random.PRNGKey(seed), whiten=True, fcls_iters=50)
        M = np.asarray(res.endmembers)[good]
        T = M_true[good]
        order = core_metrics.hungarian_match(np.asarray(core_metrics.sad_matrix(M, T))).rows
        # On the clean bands the chosen pixels are the pure ones (noiseless scene).
        assert float(np.mean(np.asarray(core_metrics.sad(M[:, order], T)))) < 1e-6
    r = unmixing.rrlbs(jnp.asarray(Y), R_, key=jax.random.PRNGKey(0), init="vca_whitened", max_iters=2,
                       fcls_iters=5)
    assert np.all(np.isfinite(np.asarray(r.endmembers)))
    with pytest.raises(ValueError, match="whiten"):
        unmixing.vca(jnp.asarray(Y), R_, key=jax.random.PRNGKey(0), whiten="yes")
    with pytest.raises(ValueError, match="init"):
        unmixing.rrlbs(jnp.asarray(Y), R_, key=jax.random.PRNGKey(0), init="bogus")


def test_default_start_screens_uniform_noise_bands(x64):
    # 10 % of the bands replaced by U(0, 3 max Y). The plain VCA-FCLS start picks wrong pixels
    # (clean-band SAD 0.23-0.33 rad, and RRLbS stays there); the default start (outlier-screened
    # bands) picks the pure pixels, and RRLbS ends as close as on the clean image.
    seed = 0
    Y, M_true, _, bad = _scene(seed, noise=2e-3, kind="uniform")
    clean = _scene(seed, noise=2e-3, bad=())[0]
    s = np.asarray(robust.screening_scales(jnp.asarray(Y)))
    assert s[bad].max() < 0.01 and np.all(s[~bad] == 1.0)
    # No outlier band: every scale is exactly 1, so the default start is the plain start bit for bit.
    assert np.all(np.asarray(robust.screening_scales(jnp.asarray(clean))) == 1.0)
    raw = unmixing.initial_point(jnp.asarray(Y), R_, seed, init="vca", fcls_iters=30)[0]
    assert _clean_band_sad(raw, M_true, ~bad) > 0.1
    kw = dict(key=seed, max_iters=30, fcls_iters=30)
    ref = _clean_band_sad(unmixing.rrlbs(jnp.asarray(clean), R_, **kw).endmembers, M_true, ~bad)
    got = _clean_band_sad(unmixing.rrlbs(jnp.asarray(Y), R_, **kw).endmembers, M_true, ~bad)
    assert got < 1.25 * ref < 0.02, (got, ref)
    with pytest.raises(ValueError, match="screen"):
        unmixing.vca(jnp.asarray(Y), R_, key=0, whiten=True, screen=True)


def test_negative_bands_keep_factors_nonnegative_and_objective_monotone(x64):
    # An unclipped noisy band (negative values), run through the solver objects (the functions
    # refuse negative input): the numerators are clamped at 0, so M, A stay >= 0 and O never rises.
    Y, M_true, A_true, _ = _scene(3, bad=())
    Y[5] = -np.abs(Y[5]) - 0.2  # a band of negative values only
    Y[11] = Y[11] + 0.8 * np.random.default_rng(0).normal(size=N_)
    Y = jnp.asarray(Y)
    M0 = jnp.asarray(np.abs(M_true) * 1.1)
    A0 = jnp.full((R_, N_), 1.0 / R_)
    for cls in (unmixing.RRLbS, unmixing.L12NMF):
        res = solve_mu(cls(R_, max_iters=60, tol=0.0), Y, None, M0, A0)
        obj = np.asarray(res.objective)
        assert np.asarray(res.endmembers).min() >= 0 and np.asarray(res.abundances).min() >= 0
        assert np.all(np.isfinite(obj)) and (np.diff(obj) / np.abs(obj[:-1])).max() <= 1e-12


def test_corruption_suite_kinds_and_layouts():
    rng = np.random.default_rng(0)
    Y = jnp.asarray(rng.uniform(0.1, 0.6, (20, 30)), jnp.float32)
    mx = float(Y.max())
    cases = [(kind, strength, "scattered") for _, kind, strength in synthetic.CORRUPTION_SUITE]
    for kind, strength, layout in cases + [("uniform", 3.0, "contiguous")]:
        Yc, bad = synthetic.corrupt_bands(1, Y, 0.1, shape=(5, 6), kind=kind, strength=strength, layout=layout)
        Yc, bad = np.asarray(Yc), np.asarray(bad)
        idx = np.flatnonzero(bad)
        assert len(idx) == 2 and Yc.dtype == np.float32, kind
        np.testing.assert_array_equal(Yc[~bad], np.asarray(Y)[~bad])
        if layout == "contiguous":
            assert idx[1] == idx[0] + 1
        rows = Yc[bad]
        if kind == "zero":
            assert np.all(rows == 0)
        elif kind == "constant":
            np.testing.assert_allclose(rows, mx, rtol=1e-6)
        elif kind == "offset":
            np.testing.assert_allclose(rows, np.asarray(Y)[bad] + mx, rtol=1e-6)
        elif kind == "uniform":
            assert rows.min() >= 0 and rows.max() <= 3 * mx and rows.max() > mx
        elif kind == "noise":
            assert rows.min() >= 0
        else:  # unclipped Gaussian
            assert rows.min() < 0
    with pytest.raises(ValueError, match="layout"):
        synthetic.corrupt_bands(1, Y, 0.1, shape=(5, 6), layout="blocks")
