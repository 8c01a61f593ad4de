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
from jsparse.unmixing import robust

L_, N_, R_ = 40, 150, 3


def _scene(seed, *, noise=1e-3, bad=(3, 17, 29, 35)):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, L_)[:, None]
    M = 0.3 + 0.25 * np.sin(2 * np.pi * (x * rng.uniform(0.5, 1.5, R_) + rng.uniform(0, 1, R_)))
    A = rng.dirichlet(np.ones(R_), N_).T
    A[:, :R_] = np.eye(R_)  # pixels 0..R-1 are pure
    Y = M @ A + noise * rng.normal(size=(L_, N_))
    mask = np.zeros(L_, bool)
    mask[list(bad)] = True
    Y[mask] = np.maximum(Y[mask] + 0.5 * Y.max() * rng.normal(size=(mask.sum(), N_)), 0.0)
    return np.maximum(Y, 0.0), M, A, mask


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
