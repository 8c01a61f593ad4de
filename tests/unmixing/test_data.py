"""Loaders (small files written in the distributed .mat layouts), synthetic scenes, metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io as sio

from jsparse.unmixing import datasets, metrics, synthetic


def _write_jasper(root, L=7, H=3, W=4, R=4):
    rng = np.random.default_rng(0)
    Y = rng.integers(0, 5437, size=(L, H * W)).astype(np.uint16)
    A = rng.dirichlet(np.ones(R), H * W).T
    (root / "jasper").mkdir(parents=True)
    sio.savemat(root / "jasper" / "jasperRidge2_R198.mat",
                {"Y": Y, "maxValue": np.array([[5000]], np.uint16), "nRow": np.array([[H]], np.uint8),
                 "nCol": np.array([[W]], np.uint8), "nBand": np.array([[224]], np.uint8),
                 "SlectBands": np.arange(1, L + 1, dtype=np.uint8)[:, None]})
    cood = np.empty((R, 1), dtype=object)
    for k, n in enumerate(["1-tree", "2-water", "3-dirt", "4-road"][:R]):
        cood[k, 0] = np.array([n])
    sio.savemat(root / "jasper" / "end4.mat", {"M": rng.random((L, R)), "A": A, "cood": cood})
    return Y, A


def test_loader_scales_and_keeps_column_major_order(tmp_path):
    Y, A = _write_jasper(tmp_path)
    d = datasets.load_dataset("jasper", root=tmp_path)
    np.testing.assert_allclose(d.Y, Y / 5000.0)
    assert d.shape == (3, 4) and d.names == ("1-tree", "2-water", "3-dirt", "4-road")
    maps = datasets.to_maps(d.abundances, d.shape)
    # Pixel p = r + c * nRow (MATLAB order).
    assert maps[2, 1, 3] == A[2, 1 + 3 * 3]


def test_loader_samson_layout_in_flat_folder(tmp_path):
    rng = np.random.default_rng(1)
    V = rng.random((5, 6))
    sio.savemat(tmp_path / "samson_1.mat", {"V": V, "nRow": np.array([[2]], np.uint8),
                                            "nCol": np.array([[3]], np.uint8)})
    sio.savemat(tmp_path / "end3.mat", {"M": rng.random((5, 3)), "A": rng.dirichlet(np.ones(3), 6).T})
    d = datasets.load_dataset("samson", root=tmp_path)
    np.testing.assert_allclose(d.Y, V)
    assert d.endmembers.shape == (5, 3)


def test_loader_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="end4.mat") as err:
        datasets.load_dataset("jasper", root=tmp_path)
    assert str(tmp_path) in str(err.value)
    # Without root: $JSPARSE_HSI_ROOT (unset here), the user folder (empty here) and the bundled data,
    # which has no Urban: the error names the variable.
    monkeypatch.delenv("JSPARSE_HSI_ROOT", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="JSPARSE_HSI_ROOT"):
        datasets.load_dataset("urban")
    with pytest.raises(ValueError, match="name"):
        datasets.load_dataset("cuprite", root=tmp_path)
    with pytest.raises(ValueError, match="num_endmembers"):
        datasets.load_dataset("urban", root=tmp_path, num_endmembers=7)
    # A ground truth whose shape disagrees with the image is rejected, naming the file.
    _write_jasper(tmp_path / "bad")
    g = sio.loadmat(tmp_path / "bad" / "jasper" / "end4.mat")
    sio.savemat(tmp_path / "bad" / "jasper" / "end4.mat", {"M": g["M"][:-1], "A": g["A"]})
    with pytest.raises(ValueError, match="end4.mat"):
        datasets.load_dataset("jasper", root=tmp_path / "bad")


def test_real_datasets_load():
    # Samson and Jasper Ridge ship with jsparse (or come from $JSPARSE_HSI_ROOT / the user folder).
    for name, L, R, n in [("samson", 156, 3, 9025), ("jasper", 198, 4, 10000)]:
        d = datasets.load_dataset(name)
        assert d.Y.shape == (L, n) and d.endmembers.shape == (L, R) and d.abundances.shape == (R, n)
        np.testing.assert_allclose(d.abundances.sum(0), 1.0, atol=1e-12)
        assert 0.9 < d.Y.max() < 1.1
    # Urban's image is never bundled nor downloaded: the message when it is missing is tested in test_fetch.py.


def test_synthetic_scene_properties(x64):
    M = synthetic.smooth_endmembers(jax.random.PRNGKey(0), 40, 4, jnp.float64)
    clean = synthetic.make_scene(jax.random.PRNGKey(1), M, (10, 8), snr_db=None, pure_fraction=0.25)
    A = np.asarray(clean.abundances)
    assert A.min() >= 0 and np.allclose(A.sum(0), 1.0)
    assert 0.15 < np.mean(np.asarray(clean.mixing) == 0) < 0.4  # about pure_fraction pure pixels
    np.testing.assert_allclose(np.asarray(clean.Y), np.asarray(M) @ A, rtol=1e-12)
    noisy = synthetic.make_scene(jax.random.PRNGKey(1), M, (10, 8), snr_db=20.0, pure_fraction=0.25)
    E = np.asarray(noisy.Y) - np.asarray(clean.Y)
    snr = 10 * np.log10(np.mean(np.asarray(clean.Y) ** 2) / np.mean(E**2))
    assert 18.5 < snr < 21.5
    bad = synthetic.make_scene(jax.random.PRNGKey(1), M, (10, 8), outlier_fraction=0.1, outlier_kind="stripes")
    mask = np.asarray(bad.outlier_bands)
    assert mask.sum() == 4 and np.asarray(bad.Y).min() >= 0
    ref = synthetic.make_scene(jax.random.PRNGKey(1), M, (10, 8))  # same noise, no outliers
    diff = np.abs(np.asarray(bad.Y) - np.asarray(ref.Y)).max(axis=1)
    assert np.all(diff[mask] > 0.05) and np.all(diff[~mask] < 1e-12)
    with pytest.raises(ValueError, match="kind"):
        synthetic.corrupt_bands(jax.random.PRNGKey(0), clean.Y, 0.1, shape=(10, 8), kind="fog")
    with pytest.raises(ValueError, match="shape"):
        synthetic.corrupt_bands(jax.random.PRNGKey(0), clean.Y, 0.1, shape=(3, 3))


def test_metrics_matching_and_errors():
    rng = np.random.default_rng(0)
    T = rng.random((10, 3))
    TA = rng.dirichlet(np.ones(3), 20).T
    perm = [2, 0, 1]
    ev = metrics.evaluate(2.0 * T[:, perm], TA[perm], T, TA, Y=T @ TA)
    np.testing.assert_array_equal(ev.order, [1, 2, 0])
    assert ev.mean_sad < 1e-6 and ev.mean_rmse < 1e-12 and ev.duplicates == 0
    assert np.isclose(ev.reconstruction, 1.0)  # endmembers scaled by 2
    # Known angle: rotate one column by 0.1 rad within a plane.
    E = np.zeros((3, 2))
    E[0, 0] = E[1, 1] = 1
    F = E.copy()
    F[:, 1] = [np.sin(0.1), np.cos(0.1), 0]
    assert np.isclose(metrics.evaluate(F, np.eye(2), E, np.eye(2)).sad[1], 0.1, atol=1e-6)
    with pytest.raises(ValueError, match="true_endmembers"):
        metrics.evaluate(T, TA, T[:-1], TA)
    with pytest.raises(ValueError, match="true_abundances"):
        metrics.evaluate(T, TA, T, TA[:, :-1])
    res = metrics.band_residuals(T @ TA, T, TA)
    assert res.shape == (10,) and res.max() < 1e-12


def test_corrupt_mat_files_name_the_path(tmp_path):
    """A truncated or garbage .mat, a missing variable, a wrong shape or a NaN: CorruptFileError
    naming the file (MatReadError / IndexError / KeyError before)."""
    from jsparse import CorruptFileError
    from tests.contract import assert_clear_error

    _write_jasper(tmp_path / "ok")
    image = (tmp_path / "ok" / "jasper" / "jasperRidge2_R198.mat").read_bytes()
    gt = sio.loadmat(tmp_path / "ok" / "jasper" / "end4.mat")
    cases = {
        "truncated": lambda d: (d / "jasperRidge2_R198.mat").write_bytes(image[: len(image) // 2]),
        "garbage": lambda d: (d / "jasperRidge2_R198.mat").write_bytes(b"MATLAB 5.0 not really" * 10),
        "empty": lambda d: (d / "end4.mat").write_bytes(b""),
        "no A": lambda d: sio.savemat(d / "end4.mat", {"M": gt["M"]}),
        "A nan": lambda d: sio.savemat(d / "end4.mat", {"M": gt["M"], "A": gt["A"] * np.nan}),
        "A text": lambda d: sio.savemat(d / "end4.mat", {"M": gt["M"], "A": "abundances"}),
    }
    for i, (what, damage) in enumerate(cases.items()):
        root = tmp_path / f"c{i}"
        _write_jasper(root)
        damage(root / "jasper")
        err = assert_clear_error(datasets.load_dataset, "jasper", root=root, match=str(root))
        assert isinstance(err, CorruptFileError), what
