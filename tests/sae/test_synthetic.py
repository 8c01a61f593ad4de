"""The statistical model X = H V."""
import jax
import numpy as np
import pytest

from jsparse.sae import synthetic


def test_batches_follow_the_model():
    st = synthetic.make_stream(jax.random.PRNGKey(0), n=40, d=12, s=4, batch_size=64)
    x, h = st.batch_with_codes(3)
    h, x, v = np.asarray(h), np.asarray(x), np.asarray(st.features)
    assert x.shape == (64, 12) and h.shape == (64, 40)
    assert np.all((h > 0).sum(1) == 4) and np.all(h >= 0)
    assert h[h > 0].min() >= 0.5 and h.max() <= 1.5
    np.testing.assert_allclose(x, h @ v, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(st.batch(3)), x)  # batch i depends on i only
    assert not np.allclose(np.asarray(st.batch(4)), x)


def test_uniform_and_power_law_frequencies():
    st = synthetic.make_stream(jax.random.PRNGKey(1), n=20, d=8, s=2, batch_size=2000)
    f = st.frequencies(num_batches=5)
    np.testing.assert_allclose(f, 2 / 20, atol=0.02)
    w = synthetic.feature_weights(50, kind="power_law", ratio=100.0)
    assert w[0] / w[-1] == pytest.approx(100.0) and np.all(np.diff(w) < 0)
    hs = synthetic.make_stream(jax.random.PRNGKey(2), n=50, d=8, s=1, batch_size=4000, frequencies="power_law")
    fh = hs.frequencies(num_batches=5)
    np.testing.assert_allclose(fh, w, atol=0.01)  # s = 1: frequency = weight exactly in expectation


def test_cooccurrence_pairs():
    st = synthetic.make_stream(jax.random.PRNGKey(3), n=10, d=6, s=1, batch_size=3000, cooccurrence=1.0)
    h = np.asarray(st.batch_with_codes(0)[1]) > 0
    assert np.all(h.sum(1) == 2)
    np.testing.assert_array_equal(h[:, 0::2], h[:, 1::2])  # partners always together


def test_bad_inputs():
    with pytest.raises(ValueError, match="s"):
        synthetic.make_stream(jax.random.PRNGKey(0), n=5, d=3, s=6)
    with pytest.raises(ValueError, match="kind"):
        synthetic.make_features(jax.random.PRNGKey(0), 5, 3, kind="laplace")
    with pytest.raises(ValueError, match="cooccurrence"):
        synthetic.make_stream(jax.random.PRNGKey(0), n=5, d=3, s=1, cooccurrence=2.0)


def test_mixture_stream_stacks_sparsity_levels_over_one_v():
    st = synthetic.make_mixture_stream(jax.random.PRNGKey(5), n=24, d=10, s=(2, 6), batch_size=400)
    x, h = st.batch_with_codes(2)
    x, h, v = np.asarray(x), np.asarray(h), np.asarray(st.features)
    assert x.shape == (400, 10) and h.shape == (400, 24) and st.batch_size == 400
    np.testing.assert_array_equal((h[:200] > 0).sum(1), 2)  # first half s = 2, second half s = 6
    np.testing.assert_array_equal((h[200:] > 0).sum(1), 6)
    np.testing.assert_allclose(x, h @ v, rtol=1e-5, atol=1e-5)
    for part in st.streams:  # one V for every level
        np.testing.assert_array_equal(np.asarray(part.features), v)
    np.testing.assert_array_equal(np.asarray(st.batch(2)), x)  # batch i depends on i only
    np.testing.assert_allclose(st.frequencies(num_batches=3), (2 + 6) / 2 / 24, atol=0.03)  # f = mean(s) / n
    # the keys are split(key, 3): V from the first, the levels from the others (the toy's layout)
    keys = jax.random.split(jax.random.PRNGKey(5), 3)
    np.testing.assert_array_equal(v, np.asarray(synthetic.make_features(keys[0], 24, 10)))
    np.testing.assert_array_equal(np.asarray(st.streams[0].key), np.asarray(keys[1]))


def test_mixture_stream_bad_inputs():
    with pytest.raises(ValueError, match="batch_size"):
        synthetic.make_mixture_stream(jax.random.PRNGKey(0), n=8, d=4, s=(1, 2), batch_size=5)
    with pytest.raises(ValueError, match="s"):
        synthetic.make_mixture_stream(jax.random.PRNGKey(0), n=8, d=4, s=(1, 9), batch_size=4)
    a = synthetic.make_stream(jax.random.PRNGKey(0), n=8, d=4, s=1, batch_size=4)
    b = synthetic.make_stream(jax.random.PRNGKey(1), n=8, d=4, s=2, batch_size=4)
    with pytest.raises(ValueError, match="other features"):
        synthetic.MixtureStream([a, b])
    with pytest.raises(ValueError, match="streams"):
        synthetic.MixtureStream([])
