"""Models (sizes vs the reference's prunable-weight counts), the jitted trainer, and the three
iterative procedures with checkpoint/resume."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jsparse import pruning
from jsparse.pruning import datasets, models, procedures, train


def _count(name, shape, classes):
    abstract = nnx.eval_shape(lambda: models.build(name, shape, classes))
    params = nnx.state(abstract, nnx.Param)
    return sum(int(np.prod(x.shape)) for p, x in jax.tree_util.tree_leaves_with_path(params)
               if pruning.default_filter(p, x))


@pytest.mark.parametrize("name,shape,classes,want", [
    ("linear", (28, 28, 1), 10, 7_840), ("mlp", (28, 28, 1), 10, 135_680), ("mlp", (32, 32, 3), 10, 428_544),
    ("cnn", (32, 32, 3), 10, 1_555_136), ("resnet18", (32, 32, 3), 10, 11_164_352),
    ("resnet18", (32, 32, 3), 100, 11_210_432), ("wresnet28x8", (32, 32, 3), 10, 23_340_464)])
def test_prunable_counts_match_reference(name, shape, classes, want):
    assert _count(name, shape, classes) == want  # table in the paper notes, section 7


def test_forward_shapes():
    for name, shape in [("resnet18", (32, 32, 3)), ("wresnet28x8", (32, 32, 3)), ("resnet50", (64, 64, 3))]:
        def fwd():
            m = models.build(name, shape, 7)
            return m(jnp.zeros((2,) + shape, jnp.float32), train=True)
        assert jax.eval_shape(fwd).shape == (2, 7)  # traced, not compiled: cheap


def _toy_data(n=96, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n).astype(np.int32)
    centers = rng.normal(size=(classes, 4, 4, 1)).astype(np.float32)
    x = centers[y] + 0.3 * rng.normal(size=(n, 4, 4, 1)).astype(np.float32)
    return datasets.Dataset(x[:64], y[:64], x[64:], y[64:], classes, "toy", False)


def _trainer(name="mlp", epochs=3, **kw):
    model = models.build(name, (4, 4, 1), 3, seed=0, **kw)
    return train.Trainer(model, steps_per_round=epochs * 4, batch_size=16, eval_batch_size=16)


@pytest.fixture(scope="module")
def mlp_trainer():
    """One MLP trainer (E = 2) shared by the procedure tests, so its steps compile once."""
    return _trainer(epochs=2)


def test_trainer_learns_and_keeps_pruned_weights_zero():
    data = _toy_data()
    tr = _trainer("cnn", widths=(4, 8))
    masks = pruning.magnitude(0.5).prune(tr.init_params, pruning.init_masks(tr.init_params))
    state = tr.init_state(pruning.apply_masks(tr.init_params, masks), tr.init_batch_stats, masks)
    losses = []
    for e in range(4):
        state, loss = tr.train_epoch(state, jnp.asarray(data.x_train), jnp.asarray(data.y_train), jax.random.PRNGKey(e))
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    for p, m in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(masks)):
        assert np.all(np.asarray(p)[~np.asarray(m)] == 0.0)
    bs0, bs1 = jax.tree_util.tree_leaves(tr.init_batch_stats), jax.tree_util.tree_leaves(state.batch_stats)
    assert any(not np.allclose(a, b) for a, b in zip(bs0, bs1))  # BN running statistics were updated
    acc, _ = tr.evaluate(state.params, state.batch_stats, jnp.asarray(data.x_test), jnp.asarray(data.y_test))
    assert float(acc) > 0.6


def test_augment_keeps_shape_and_is_a_crop_of_flip():
    x = jnp.arange(2 * 6 * 6 * 1, dtype=jnp.float32).reshape(2, 6, 6, 1)
    out = train.augment_flip_crop(jax.random.PRNGKey(0), x, pad=2)
    assert out.shape == x.shape
    for b in range(2):
        padded = [np.pad(np.asarray(v), ((2, 2), (2, 2), (0, 0)), mode="reflect") for v in (x[b], x[b, :, ::-1])]
        hits = [np.array_equal(out[b], P[i:i + 6, j:j + 6]) for P in padded for i in range(5) for j in range(5)]
        assert any(hits)


@pytest.mark.parametrize("method", ["sap", "os"])
def test_resume_after_kill_gives_same_result(tmp_path, method, mlp_trainer):
    data, rounds, epochs = _toy_data(), 2, 2
    tr = mlp_trainer
    rule = procedures.make_rule(method)
    full = procedures.run_procedure(tr, data, rule, method=method, rounds=rounds, epochs=epochs, out_dir=tmp_path / "a")
    assert full.computed == [0, 1, 2]
    assert not list((tmp_path / "a").glob("*_partial"))  # epoch checkpoints go once a round is recorded
    assert "0x" not in (tmp_path / "a" / "records.json").read_text()  # no address: another process resumes it
    part = procedures.run_procedure(tr, data, rule, method=method, rounds=rounds, epochs=epochs,
                                    out_dir=tmp_path / "b", stop_after=1)  # "killed" after round 1
    assert part.computed == [0, 1]
    again = procedures.run_procedure(tr, data, rule, method=method, rounds=rounds, epochs=epochs,
                                     out_dir=tmp_path / "b")
    assert again.computed == [2]  # rounds 0 and 1 were not redone
    assert len(again.records) == rounds + 1
    for a, b in zip(full.records, again.records):
        for k in ("remaining", "test_acc", "pqi", "pruned_acc", "remaining_next"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k
    for m1, m2 in zip(jax.tree_util.tree_leaves(full.masks), jax.tree_util.tree_leaves(again.masks)):
        np.testing.assert_array_equal(m1, m2)
    if method == "sap":
        for row in full.records:  # the pruned count is the PQ-Index formula's
            assert abs(row["pruned"] - row["expected_pruned"]) <= 1
    else:
        assert [r["remaining"] for r in full.records] == pytest.approx([1.0, 0.8, 0.64], abs=0.01)
    with pytest.raises(ValueError, match="out_dir"):
        procedures.run_procedure(tr, data, rule, method=method, rounds=rounds + 1, epochs=epochs,
                                 out_dir=tmp_path / "b")


def test_lottery_ticket_rewinds_to_initial_weights(mlp_trainer):
    data = _toy_data()
    res = procedures.run_procedure(mlp_trainer, data, procedures.make_rule("lt"), method="lt", rounds=1, epochs=1)
    assert [r["remaining"] for r in res.records] == pytest.approx([1.0, 0.8], abs=0.01)
    with pytest.raises(ValueError, match="method"):
        procedures.make_rule("random")


def test_fit_checkpoints_every_epoch_and_resumes_bit_identically(tmp_path, mlp_trainer, monkeypatch):
    """Trainer.fit killed in epoch 2 resumes from epoch 1's state and ends equal to an uninterrupted
    fit; every leaf keeps its dtype; another key or start state is refused; a damaged file is a
    CorruptFileError."""
    from jsparse import CorruptFileError
    from tests.contract import assert_clear_error

    tr, data = mlp_trainer, _toy_data()
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    masks = pruning.init_masks(tr.init_params)
    start = tr.init_state(tr.init_params, tr.init_batch_stats, masks)
    ref, ref_loss = tr.fit(start, x, y, 7, epochs=3)
    calls = []
    real = tr.train_epoch

    def dies_in_epoch_2(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(*args)

    monkeypatch.setattr(tr, "train_epoch", dies_in_epoch_2)
    with pytest.raises(RuntimeError, match="killed"):
        tr.fit(start, x, y, 7, epochs=3, checkpoint_dir=tmp_path)
    monkeypatch.undo()
    calls.clear()
    monkeypatch.setattr(tr, "train_epoch", lambda *a: (calls.append(1), real(*a))[1])
    got, loss = tr.fit(start, x, y, 7, epochs=3, checkpoint_dir=tmp_path)
    assert len(calls) == 2  # epochs 2 and 3 only
    monkeypatch.undo()
    for a, b in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(got)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert float(loss) == float(ref_loss)
    assert_clear_error(tr.fit, start, x, y, 8, epochs=3, checkpoint_dir=tmp_path, match="checkpoint_dir")
    other = tr.init_state(tr.init_params, tr.init_batch_stats, pruning.magnitude(0.5).prune(tr.init_params, masks))
    assert_clear_error(tr.fit, other, x, y, 7, epochs=3, checkpoint_dir=tmp_path, match="checkpoint_dir")
    path = tmp_path / train.CHECKPOINT_FILE
    path.write_bytes(path.read_bytes()[:100])
    err = assert_clear_error(tr.fit, start, x, y, 7, epochs=3, checkpoint_dir=tmp_path, match=train.CHECKPOINT_FILE)
    assert isinstance(err, CorruptFileError)
