"""Trainer: recovery on a small problem, every method runs, checkpoint/resume, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse import sae
from jsparse.sae import metrics


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
    with pytest.raises(RuntimeError, match="killed"):
        sae.train(_Killer(small, kill_at=47), checkpoint_dir=tmp_path, **kw)  # last checkpoint: step 40
    resumed, hist_res = sae.train(_Killer(small), checkpoint_dir=tmp_path, **kw)
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
