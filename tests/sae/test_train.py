"""Trainer: recovery on a small problem, every method runs, checkpoint/resume, bad input."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse import CorruptFileError, sae
from jsparse.sae import metrics
from tests.contract import assert_clear_error


@pytest.fixture(scope="module")
def small():
    return sae.make_stream(jax.random.PRNGKey(0), n=64, d=32, s=3, batch_size=256)


def test_gba_recovers_most_features(small):
    model, hist = sae.train(small, method="gba", width=256, steps=1500, key=jax.random.PRNGKey(1))
    rec = metrics.recovery_rate(model.decoder_weight(), small.features)
    assert rec[0.8] >= 0.9, rec
    assert hist["finite"] and np.all(np.isfinite(hist["loss"]))
    assert hist["fvu"][-1] < 0.5 * hist["fvu"][0]  # it learned to reconstruct
    b = np.asarray(model.bias[...])
    assert b.min() >= -1.0 and b.max() <= 0.0  # the clamp holds
    freqs = metrics.evaluate(model, [small.batch(10**6 + i) for i in range(8)])["frequencies"]
    g = np.asarray(sae.gba.group_ids(256, 10))
    by_group = np.array([freqs[g == k].mean() for k in range(10)])
    assert by_group[0] > by_group[-1] and by_group[-1] < 0.01  # groups spread in frequency


@pytest.mark.parametrize("method", ["ba", "topk", "batchtopk", "relu_l1", "jumprelu"])
def test_every_method_trains(small, method):
    k = dict(k=3) if method in ("topk", "batchtopk") else {}  # k belongs to the TopK methods only
    model, hist = sae.train(small, method=method, width=64, steps=60, key=jax.random.PRNGKey(2), log_every=20, **k)
    assert hist["finite"] and hist["loss"].shape == (3,) and np.all(np.isfinite(hist["loss"]))
    assert hist["loss"][-1] < hist["loss"][0]
    ev = metrics.evaluate(model, [small.batch(5000)])
    assert 0 < ev["l0"] < 64
    if method == "topk":
        assert hist["l0"][-1] == 3.0  # exactly k per sample during training
    if method == "batchtopk":
        assert hist["l0"][-1] == pytest.approx(3.0)  # k on average over the batch
        assert float(model.threshold[...]) > 0  # inference threshold learned


class _Killer:
    """Batches from a stream, raising at `kill_at` (a crash mid-run)."""

    def __init__(self, stream, kill_at=None):
        self.stream, self.kill_at = stream, kill_at

    def __call__(self, i):
        if self.kill_at is not None and i == self.kill_at:
            raise RuntimeError("killed")
        return self.stream.batch(i)


@pytest.mark.parametrize("method", ["gba", "topk"])
def test_resume_is_bit_identical(small, tmp_path, method):
    setting = dict(update_every=4) if method == "gba" else dict(k=3)
    kw = dict(method=method, width=32, steps=50, key=jax.random.PRNGKey(3), log_every=5, checkpoint_every=20,
              **setting)
    full, hist_full = sae.train(_Killer(small), **kw)
    for kill_at in (27, 47):  # killed twice (last checkpoints: steps 20 and 40), then completed
        with pytest.raises(RuntimeError, match="killed"):
            sae.train(_Killer(small, kill_at=kill_at), checkpoint_dir=tmp_path, **kw)
    resumed, hist_res = sae.train(_Killer(small), checkpoint_dir=tmp_path, **kw)
    assert all(hist_res[k].dtype == hist_full[k].dtype for k in hist_full)
    for a, b in zip(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.asarray, full)),
                    jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.asarray, resumed))):
        np.testing.assert_array_equal(a, b)
    for name in hist_full:
        np.testing.assert_array_equal(hist_full[name], hist_res[name])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(width=0), "width"),
        (dict(groups=17), "groups"),
        (dict(htf=1.5), "htf"),
        (dict(ltf=0.0), "ltf"),
        (dict(htf=0.001, ltf=0.1), "htf"),
        (dict(targets=[0.1, 0.3]), "targets"),
        (dict(method="ba", target=1.0), "target"),
        (dict(method="nope"), "method"),
        (dict(scale_warmup=-1), "scale_warmup"),
        (dict(bias_init="median"), "bias_init"),
        (dict(method="topk", k=17), "k"),
        (dict(k=3), "k"),  # gba has no k: a setting of another method is refused, not ignored
        (dict(method="topk", l1=0.1), "l1"),
        (dict(method=3), "method"),
        (dict(dead_steps=-1), "dead_steps"),
    ],
)
def test_bad_settings_raise(small, kwargs, match):
    kw = dict(method="gba", width=16, steps=5, key=jax.random.PRNGKey(0))
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sae.train(small, **kw)


def test_bad_batches_raise(small):
    good = np.asarray(small.batch(0))
    nan_later = lambda i: good if i < 3 else np.full_like(good, np.nan)  # noqa: E731
    with pytest.raises(ValueError, match="batches: batch 3 contains NaN"):
        sae.train(nan_later, width=16, steps=6, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="batches"):
        sae.train([good[0]], width=16, steps=1, key=jax.random.PRNGKey(0))
    wrong_d = lambda i: good if i == 0 else good[:, :-1]  # noqa: E731
    with pytest.raises(ValueError, match=r"batches: batch 1 has shape"):
        sae.train(wrong_d, width=16, steps=3, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="batches: ran out"):
        sae.train([good, good], width=16, steps=3, key=jax.random.PRNGKey(0))


def test_scale_warmup_freezes_output_scale_then_releases(small):
    """scale_warmup = 3: a keeps its initial value through steps 1-3 (W moves), moves at step 4."""
    import optax
    from flax import nnx

    from jsparse.sae.train import build, init_state, make_step

    method = sae.GBA(groups=2, update_every=2, scale_init=0.01)
    model = build(method, 32, 16, jax.random.PRNGKey(4))
    opt = optax.adam(1e-2)
    state = init_state(model, opt, method, small.batch(0), True)
    step = make_step(nnx.graphdef(model), method.step_part(), opt, scale_warmup=3)
    w0, a0 = np.asarray(state.params["w_enc"][...]), np.asarray(state.params["scale"][...])
    for i in range(3):
        state, _ = step(state, small.batch(i + 1))
        np.testing.assert_array_equal(np.asarray(state.params["scale"][...]), a0)
    assert not np.allclose(np.asarray(state.params["w_enc"][...]), w0)
    state, _ = step(state, small.batch(4))
    assert np.all(np.asarray(state.params["scale"][...]) != a0)


def test_quantile_bias_fires_at_each_target_and_clamps():
    """b_m = -(1 - p_m) quantile of u[:, m]: exactly floor(p_m B) of B distinct values fire; the
    clamp [-1, 0] binds for columns whose quantile lies outside [0, 1]."""
    from jsparse.sae.train import quantile_bias

    rng = np.random.default_rng(0)
    u = 0.3 + 0.2 * rng.normal(size=(1000, 6))  # every quantile used lies in (0, 1)
    p = np.array([0.5, 0.2, 0.1, 0.05, 0.01, 0.001])
    b = np.asarray(quantile_bias(jnp.asarray(u, jnp.float32), jnp.asarray(p, jnp.float32)))
    np.testing.assert_array_equal(((u.astype(np.float32) + b) > 0).sum(axis=0), np.floor(p * 1000))
    np.testing.assert_allclose(-b, [np.sort(u[:, m])[int(np.ceil((1 - p[m]) * 1000)) - 1] for m in range(6)], rtol=1e-6)
    wide = np.asarray(quantile_bias(jnp.asarray(10 * u), jnp.asarray(p)))  # quantiles > 1: clamped at -1
    assert np.all(wide >= -1.0) and wide[-1] == -1.0
    low = np.asarray(quantile_bias(jnp.asarray(u - 5), jnp.asarray(p)))  # all negative: clamped at 0
    np.testing.assert_array_equal(low, 0.0)


def test_bias_init_quantile_starts_gba_at_its_targets(small):
    """With bias_init="quantile" the first step's L0 (codes of the first batch, before any update)
    is sum_m floor(p_m B) / B up to the few latents where the [-1, 0] clamp binds; with the paper's
    zero init about half the latents fire."""
    targets = [0.2, 0.1, 0.05, 0.02]
    kw = dict(method="gba", width=64, steps=1, key=jax.random.PRNGKey(3), targets=targets, log_every=1)
    _, hq = sae.train(small, bias_init="quantile", **kw)
    _, hz = sae.train(small, **kw)
    want = 16 * sum(np.floor(np.array(targets) * 256)) / 256
    assert hq["l0"][0] == pytest.approx(want, rel=0.05)
    assert hz["l0"][0] > 20  # zero biases: ~half of 64 fire


def _leaves(model):
    return [np.asarray(v) for v in jax.tree_util.tree_leaves(model)]


def test_checkpoint_round_trips_every_leaf_and_refuses_other_settings(small, tmp_path):
    """A finished run re-opened twice keeps every leaf's dtype (the float64 history once came back
    float32 and the third run failed); other method settings (GBA's are all recorded), another key
    or normalisation are refused with a ValueError naming them; damaged files: CorruptFileError."""
    kw = dict(method="gba", width=16, steps=4, key=jax.random.PRNGKey(0), log_every=2, checkpoint_every=2,
              update_every=2, groups=2, show_progress=False)
    first, h1 = sae.train(small, checkpoint_dir=tmp_path, **kw)
    for _ in range(2):
        again, h2 = sae.train(small, checkpoint_dir=tmp_path, **kw)
    for a, b in zip(_leaves(first), _leaves(again)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert all(h2[k].dtype == h1[k].dtype for k in h1) and h2["loss"].dtype == np.float64
    for change, name in [(dict(groups=4), "groups"), (dict(htf=0.3), "htf"), (dict(gamma_plus=0.02), "gamma_plus"),
                         (dict(gate="relu"), "gate"), (dict(update_every=3), "update_every"),
                         (dict(key=jax.random.PRNGKey(1)), "key"), (dict(normalize=False), "normalize")]:
        assert_clear_error(sae.train, small, checkpoint_dir=tmp_path, **dict(kw, **change),
                           match=f"checkpoint_dir: .*different settings.*{name}")
    assert_clear_error(sae.train, small, checkpoint_dir=tmp_path, **dict(kw, method="ba", groups=None),
                       match="checkpoint_dir")
    state = tmp_path / "state.npz"
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])
    err = assert_clear_error(sae.train, small, checkpoint_dir=tmp_path, **kw, match="state.npz")
    assert isinstance(err, CorruptFileError)
    state.write_bytes(data)
    # A kill between state.npz and its readable copy meta.json leaves the copy absent: the
    # settings inside state.npz still resume the run (this was once refused as damage).
    (tmp_path / "meta.json").unlink()
    resumed, _ = sae.train(small, checkpoint_dir=tmp_path, **kw)
    for a, b in zip(_leaves(first), _leaves(resumed)):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_of_an_earlier_version_is_refused_clearly(small, tmp_path):
    """A checkpoint without the full method settings cannot be checked: refused, not resumed."""
    from jsparse.core import records

    kw = dict(method="topk", k=3, width=16, steps=2, key=0, log_every=1, show_progress=False)
    model, hist = sae.train(small, checkpoint_dir=tmp_path, **kw)
    arrays = records.load_arrays(tmp_path / "state.npz")
    old_meta = json.loads(str(arrays.pop("meta")))
    del old_meta["method_settings"]
    records.save_arrays(tmp_path / "state.npz", arrays)
    records.write_json(tmp_path / "meta.json", old_meta)
    assert_clear_error(sae.train, small, checkpoint_dir=tmp_path, **kw, match="earlier version")
    (tmp_path / "meta.json").unlink()  # such a file holds no settings of its own
    assert isinstance(assert_clear_error(sae.train, small, checkpoint_dir=tmp_path, **kw, match="meta.json"),
                      CorruptFileError)
    again, _ = sae.train(small, checkpoint_dir=tmp_path, resume=False, **kw)  # starting over works
    for a, b in zip(_leaves(model), _leaves(again)):
        np.testing.assert_array_equal(a, b)


def test_sources_generator_and_batch_attribute(small):
    """A one-shot generator loses no batch to the first-batch peek; an iterator whose `batch` is a
    number (not a method) is an iterable; an int seed is the PRNGKey of that seed."""
    kw = dict(method="topk", k=3, width=16, steps=4, log_every=1, show_progress=False)
    ref, h_ref = sae.train(small.batch, key=jax.random.PRNGKey(5), **kw)

    def gen():
        for i in range(4):
            yield np.asarray(small.batch(i))

    class Batches:
        batch = 256  # the batch size, not a method

        def __init__(self):
            self.i = -1

        def __iter__(self):
            return self

        def __next__(self):
            self.i += 1
            return small.batch(self.i)

    for source in (gen(), Batches()):
        got, h = sae.train(source, key=5, **kw)
        for a, b in zip(_leaves(ref), _leaves(got)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(h["loss"], h_ref["loss"])
    assert_clear_error(sae.train, small, key="seed", **kw, match="key")
    assert_clear_error(sae.train, small, key=-1, **kw, match="key")
    assert_clear_error(sae.train, 42, key=0, **kw, match="batches")


@pytest.mark.parametrize("options,match", [(dict(activation="jumprelu", bandwidth=0.0), "bandwidth"),
                                           (dict(activation="jumprelu", jump_threshold=-1.0), "jump_threshold"),
                                           (dict(scale_init=float("nan")), "scale_init")])
def test_sae_model_settings_are_checked(options, match):
    from flax import nnx

    assert_clear_error(sae.SAE, 4, 8, rngs=nnx.Rngs(0), match=match, **options)
