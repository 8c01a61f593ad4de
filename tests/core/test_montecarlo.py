"""Monte Carlo harness: layout of results, independence from chunking, exact resume after a crash."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse.core import montecarlo, records


def trial(key, snr_db, scale, method):
    noise = jax.random.normal(key, (4,))
    offset = 1.0 if method == "a" else -1.0
    return {"score": jnp.sum(noise) * jnp.asarray(scale, noise.dtype) / snr_db + offset, "noise": noise}


GRID = {"snr_db": [10.0, 20.0, 30.0], "method": ["a", "b"], "scale": [1, 2]}


def test_layout_and_values_match_direct_evaluation():
    res = montecarlo.sweep(trial, GRID, num_trials=5, key=3, chunk_size=4, progress=False)
    assert res.arrays["score"].shape == (3, 2, 2, 5)
    assert res.arrays["noise"].shape == (3, 2, 2, 5, 4)
    key = jax.random.PRNGKey(3)
    for i, snr in enumerate(GRID["snr_db"]):
        for j, method in enumerate(GRID["method"]):
            for k, scale in enumerate(GRID["scale"]):
                for t in range(5):
                    want = trial(jax.random.fold_in(key, t), snr, scale, method)
                    np.testing.assert_allclose(res.arrays["score"][i, j, k, t], want["score"], rtol=1e-6)
    assert len(res.records) == 3 * 2 * 2 * 5
    row = res.records[7]
    assert set(row) == {"snr_db", "method", "scale", "trial", "score"}
    assert res.arrays["score"][0, 0, 1, 2] == pytest.approx(res.records[7]["score"])
    assert res.meta["chunks_computed"] == 2 * 8  # 2 static values x ceil(6 numeric points * 5 trials / 4)


def test_results_do_not_depend_on_chunking_or_batching():
    a = montecarlo.sweep(trial, GRID, num_trials=7, key=1, chunk_size=5, progress=False)
    b = montecarlo.sweep(trial, GRID, num_trials=7, key=1, chunk_size=64, batch_size=3, progress=False)
    np.testing.assert_allclose(a.arrays["score"], b.arrays["score"], rtol=1e-6)
    np.testing.assert_array_equal(a.arrays["noise"], b.arrays["noise"])


class Crash(RuntimeError):
    pass


def test_interrupted_sweep_resumes_exactly(tmp_path, monkeypatch):
    reference = montecarlo.sweep(trial, GRID, num_trials=6, key=5, chunk_size=4, out_dir=tmp_path / "ref",
                                 progress=False)

    saved = []
    real_save = records.save_arrays

    def crashing_save(path, outputs):
        if len(saved) == 3:
            raise Crash("killed mid-sweep")
        real_save(path, outputs)
        saved.append(path)

    monkeypatch.setattr(records, "save_arrays", crashing_save)
    with pytest.raises(Crash):
        montecarlo.sweep(trial, GRID, num_trials=6, key=5, chunk_size=4, out_dir=tmp_path / "run", progress=False)
    monkeypatch.setattr(records, "save_arrays", real_save)
    assert len(list((tmp_path / "run" / "sweep" / "chunks").glob("*.npz"))) == 3

    resumed = montecarlo.sweep(trial, GRID, num_trials=6, key=5, chunk_size=4, out_dir=tmp_path / "run", progress=False)
    total = reference.meta["chunks_computed"]
    assert resumed.meta["chunks_loaded"] == 3
    assert resumed.meta["chunks_computed"] == total - 3
    assert resumed.records == reference.records
    for k in reference.arrays:
        np.testing.assert_array_equal(resumed.arrays[k], reference.arrays[k])
    # a third run recomputes nothing
    again = montecarlo.sweep(trial, GRID, num_trials=6, key=5, chunk_size=4, out_dir=tmp_path / "run", progress=False)
    assert again.meta["chunks_computed"] == 0
    assert (tmp_path / "run" / "sweep" / "records.json").exists()


def test_refuses_folder_of_another_sweep(tmp_path):
    montecarlo.sweep(trial, GRID, num_trials=2, key=0, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="out_dir"):
        montecarlo.sweep(trial, GRID, num_trials=3, key=0, out_dir=tmp_path, progress=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_trials"):
        montecarlo.sweep(trial, GRID, num_trials=0)
    with pytest.raises(ValueError, match="snr_db"):
        montecarlo.sweep(trial, {"snr_db": [], "method": ["a"], "scale": [1]}, num_trials=2)
    with pytest.raises(ValueError, match="mixes"):
        montecarlo.sweep(trial, {"snr_db": [1.0, "x"], "method": ["a"], "scale": [1]}, num_trials=2)
    with pytest.raises(ValueError, match="key"):
        montecarlo.sweep(trial, GRID, num_trials=2, key=jnp.zeros(3))
