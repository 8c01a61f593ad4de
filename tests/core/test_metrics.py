"""Metrics against hand computations and scipy."""
import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from jsparse.core import metrics


def test_nmse_and_db():
    x = jnp.asarray([3.0, 4.0])
    np.testing.assert_allclose(metrics.nmse(x + jnp.asarray([0.3, 0.4]), x), 0.01, rtol=1e-6)
    np.testing.assert_allclose(metrics.nmse_db(x + jnp.asarray([0.3, 0.4]), x), -20.0, rtol=1e-5)
    per_column = metrics.nmse(jnp.zeros((2, 3)), jnp.ones((2, 3)), axis=0)
    np.testing.assert_allclose(per_column, np.ones(3))


def test_support_jaccard():
    truth = jnp.asarray([1.0, 0.0, 2.0, 0.0, 0.0])
    est = jnp.asarray([0.9, 1e-6, 0.0, 0.5, 0.0])  # 1e-6 is below 1e-3 * max
    # S = {0, 2}, S_hat = {0, 3}: |∩| = 1, |∪| = 3
    np.testing.assert_allclose(metrics.support_jaccard(est, truth), 1 / 3)
    assert float(metrics.support_jaccard(jnp.zeros(4), jnp.zeros(4))) == 1.0
    assert float(metrics.support_jaccard(truth, truth)) == 1.0


def test_sad_and_rmse():
    a = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
    b = jnp.asarray([[1.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(metrics.sad(a, b), [np.pi / 4, np.pi / 2], rtol=1e-6)
    np.testing.assert_allclose(metrics.sad(a, 3.0 * a), [0.0, 0.0], atol=1e-3)  # scale invariant
    np.testing.assert_allclose(metrics.rmse(jnp.asarray([1.0, 3.0]), jnp.asarray([0.0, 0.0])), np.sqrt(5.0))


def test_hungarian_matches_brute_force():
    rng = np.random.default_rng(0)
    cost = rng.random((4, 4))
    best = min(itertools.permutations(range(4)), key=lambda p: sum(cost[p[j], j] for j in range(4)))
    m = metrics.hungarian_match(cost)
    assert list(m.cols) == [0, 1, 2, 3]
    assert list(m.rows) == list(best)
    np.testing.assert_allclose(m.cost, sum(cost[best[j], j] for j in range(4)))
    with pytest.raises(ValueError, match="cost"):
        metrics.hungarian_match(np.ones(3))


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (6,), elements=st.floats(-10, 10)), arrays(np.float64, (6,), elements=st.floats(-10, 10)))
def test_jaccard_is_a_similarity(a, b):
    j_ab = float(metrics.support_jaccard(jnp.asarray(a), jnp.asarray(b)))
    assert 0.0 <= j_ab <= 1.0
    np.testing.assert_allclose(j_ab, float(metrics.support_jaccard(jnp.asarray(b), jnp.asarray(a))))
    assert float(metrics.support_jaccard(jnp.asarray(a), jnp.asarray(a))) == 1.0
