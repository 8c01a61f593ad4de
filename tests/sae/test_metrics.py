"""Metrics against hand computations."""
import numpy as np
import pytest

from jsparse.sae import metrics


def test_recovery_max_vs_hungarian_by_hand():
    feats = np.eye(3)
    c = np.cos(np.deg2rad(20.0))  # 0.9397
    # latent 0 sits exactly on feature 0; latent 1 is 20 degrees from feature 1;
    # latent 2 is feature 0 again (a duplicate); feature 2 has nobody near it.
    dec = np.array([[1.0, 0, 0], [0, c, np.sqrt(1 - c * c)], [2.0, 0, 0], [0, 0.1, 0.05]])
    r = metrics.recovery_rate(dec, feats, (0.8, 0.95))
    assert r == {0.8: pytest.approx(2 / 3), 0.95: pytest.approx(1 / 3)}
    # max-cosine matching lets one latent serve two features; Hungarian does not
    feats2 = np.array([[1.0, 0, 0], [0.99, 0.141, 0]])
    dec2 = np.array([[1.0, 0.07, 0], [0, 0, 1.0]])
    assert metrics.recovery_rate(dec2, feats2, (0.9,))[0.9] == 1.0
    assert metrics.recovery_rate(dec2, feats2, (0.9,), matching="hungarian")[0.9] == 0.5
    np.testing.assert_allclose(metrics.per_feature_max_cosine(dec, feats), [1.0, c, 0.05 / np.sqrt(0.0125)], rtol=1e-6)


def test_fvu_l0_dead_by_hand():
    x = np.array([[1.0, 0.0], [3.0, 2.0]])
    xh = np.array([[1.0, 1.0], [2.0, 2.0]])
    # mean (2, 1); total variance = (1 + 1) + (1 + 1) = 4; residual = 1 + 1 = 2
    assert metrics.fvu(x, xh) == pytest.approx(0.5)
    assert metrics.explained_variance(x, xh) == pytest.approx(0.5)
    assert metrics.mean_l0(np.array([[0, 1.0, 2.0], [0, 0, 3.0]])) == pytest.approx(1.5)
    assert metrics.dead_fraction(np.array([0, 4, 0, 1])) == 0.5


def test_consistency_and_histogram():
    a = np.array([[1.0, 0], [0, 1.0]])
    b = np.array([[1.0, 0.0], [1.0, 1.0]])
    mcs, frac = metrics.max_cosine_consistency(a, b, 0.9)
    np.testing.assert_allclose(mcs, [1.0, 1 / np.sqrt(2)])
    assert frac == 0.5
    counts, edges = metrics.frequency_histogram([0.5, 0.05, 0.0, 1e-3], bins=6)
    assert counts.sum() == 4 and edges[0] == -6.0 and edges[-1] == 0.0
    assert counts[0] == 1  # the never-firing latent lands in the lowest bin


def test_bad_metric_inputs():
    with pytest.raises(ValueError, match="b"):
        metrics.cosine_matrix(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="matching"):
        metrics.recovery_rate(np.ones((2, 3)), np.ones((2, 3)), matching="greedy")
    with pytest.raises(ValueError, match="x_hat"):
        metrics.fvu(np.ones((2, 3)), np.ones((3, 3)))


def test_evaluate_fvu_is_accurate_for_data_with_a_large_mean():
    """Mean 1000, spread 1, float32: the one-pass denominator sum x^2 - (sum x)^2 / n was 20 %
    off; the merged centred sums agree with a float64 NumPy reference over the same x_hat."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jsparse import sae

    model = sae.SAE(6, 12, activation="topk", k=2, tied=False, output_scale=False, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    batches = [(1000.0 + rng.normal(size=(64, 6))).astype(np.float32) for _ in range(5)]
    x = np.concatenate(batches).astype(np.float64)
    graphdef, state = nnx.split(model)
    xh = np.asarray(jax.jit(lambda st, b: nnx.merge(graphdef, st)(b))(state, jnp.asarray(np.concatenate(batches))))
    xh = xh.astype(np.float64)
    want = np.sum((x - xh) ** 2) / np.sum((x - x.mean(0)) ** 2)
    got = metrics.evaluate(model, iter(batches))  # a one-shot iterator: one pass
    assert got["fvu"] == pytest.approx(want, rel=1e-5)
    assert got["samples"] == 320
    with pytest.raises(ValueError, match="batches"):
        metrics.evaluate(model, [np.ones((4, 5), np.float32)])
    with pytest.raises(ValueError, match="no rows"):
        metrics.evaluate(model, [])
