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


def test_sad_is_accurate_for_tiny_and_large_angles():
    """SAD against exact angles 1e-6..pi in float32 and float64 (arccos of the cosine gave 0 for
    1e-4 rad in float32), plus random pairs against a float64 arccos reference."""
    import jax

    from tests.contract import assert_clear_error

    thetas = np.array([1e-6, 1e-5, 1e-4, 1e-3, 0.1, 1.0, 2.0, 3.0, np.pi - 1e-3, np.pi])
    rng = np.random.default_rng(0)
    # Column j: a random unit vector e and cos(theta_j) e + sin(theta_j) f with f orthogonal to e.
    E = np.linalg.qr(rng.normal(size=(8, 2)))[0]
    a = np.repeat(E[:, :1], thetas.size, axis=1) * rng.uniform(0.5, 2.0, thetas.size)
    b = np.outer(E[:, 0], np.cos(thetas)) + np.outer(E[:, 1], np.sin(thetas))
    x, y = rng.uniform(0.1, 1.0, (8, 5)), rng.uniform(0.1, 1.0, (8, 5))
    ref = np.arccos(np.clip((x.T @ y) / np.outer(np.linalg.norm(x, axis=0), np.linalg.norm(y, axis=0)), -1, 1))
    for dtype, rtol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        with jax.enable_x64(dtype == np.float64):
            got = np.asarray(metrics.sad(jnp.asarray(a, dtype), jnp.asarray(b, dtype)))
            assert got.dtype == dtype
            # float32 inputs carry ~6e-8 relative rounding: the angle is exact to that, absolute
            np.testing.assert_allclose(got, thetas, rtol=rtol, atol=3e-7 if dtype == np.float32 else 1e-15)
            np.testing.assert_allclose(metrics.sad_matrix(jnp.asarray(x, dtype), jnp.asarray(y, dtype)), ref,
                                       rtol=1e-5 if dtype == np.float32 else 1e-10)
    assert float(metrics.sad(jnp.zeros((3, 1)), jnp.ones((3, 1)))[0]) == pytest.approx(np.pi / 2)
    assert_clear_error(metrics.sad, "abc", np.ones((3, 1)), match="estimate")
    assert_clear_error(metrics.sad, np.ones((3, 2)), np.ones((4, 2)), match="truth")
    assert_clear_error(metrics.sad, np.ones((3, 2)), np.ones((3, 1)), match="truth")
