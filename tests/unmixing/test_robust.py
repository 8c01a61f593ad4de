"""The robust (noise-whitened) initialisation: HySime band noise vs explicit regressions, and
outlier-band detection / VCA on a scene with corrupted bands."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse import unmixing
from jsparse.core import metrics as core_metrics
from jsparse.unmixing import robust
from tests.unmixing.helpers import R, small_scene


def test_band_noise_matches_explicit_regressions(x64):
    # Reference: for every band, least squares of that band on all the other bands (N x (L-1)).
    sc = small_scene(jax.random.PRNGKey(11), jnp.float64, snr_db=30.0, shape=(12, 12))
    Y = np.asarray(sc.Y)
    L, N = Y.shape
    ref = []
    for band in range(L):
        others = np.delete(Y, band, axis=0).T
        coef = np.linalg.lstsq(others, Y[band], rcond=None)[0]
        ref.append(np.sqrt(np.mean((Y[band] - others @ coef) ** 2)))
    got = np.asarray(robust.band_noise(jnp.asarray(Y), ridge=1e-12))
    np.testing.assert_allclose(got, np.asarray(ref), rtol=1e-4)


def test_whitening_flags_the_corrupted_bands():
    # float32 in the default pass, float64 in the JAX_ENABLE_X64=1 pass (ridge differs per dtype).
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    sc = small_scene(jax.random.PRNGKey(12), dtype, snr_db=35.0, shape=(12, 12), bands=40, outlier_fraction=0.1)
    s = robust.whitening_scales(sc.Y)
    assert s.dtype == jnp.dtype(dtype)
    s, bad = np.asarray(s), np.asarray(sc.outlier_bands)
    assert bad.sum() == 4
    # Every corrupted band is scaled down far below every clean band.
    assert s[bad].max() < 0.1 * s[~bad].min(), (s[bad], s[~bad].min())


def test_whitened_vca_ignores_corrupted_bands(x64):
    sc = small_scene(jax.random.PRNGKey(13), jnp.float64, snr_db=None, shape=(12, 12), bands=40, pure=0.3,
                     outlier_fraction=0.1)
    good = ~np.asarray(sc.outlier_bands)
    T = np.asarray(sc.endmembers)[good]
    for seed in range(2):
        res = unmixing.vca(sc.Y, R, key=jax.random.PRNGKey(seed), whiten=True, fcls_iters=300)
        M = np.asarray(res.endmembers)[good]
        order = core_metrics.hungarian_match(np.asarray(core_metrics.sad_matrix(M, T))).rows
        # On the clean bands the chosen pixels are the pure ones (noiseless scene).
        assert float(np.mean(np.asarray(core_metrics.sad(M[:, order], T)))) < 1e-6
    r = unmixing.rrlbs(sc.Y, R, key=jax.random.PRNGKey(0), init="vca_whitened", max_iters=5)
    assert np.all(np.isfinite(np.asarray(r.endmembers)))
    with pytest.raises(ValueError, match="whiten"):
        unmixing.vca(sc.Y, R, key=jax.random.PRNGKey(0), whiten="yes")
    with pytest.raises(ValueError, match="init"):
        unmixing.rrlbs(sc.Y, R, key=jax.random.PRNGKey(0), init="bogus")
