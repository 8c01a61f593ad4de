"""Bias adaptation: targets, groups, the window rule against a NumPy re-statement."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse.sae import gba
from tests.contract import BadInput, ContractCase, ContractSuite


def test_targets_geometric_highest_to_lowest():
    p = gba.target_frequencies(5, htf=0.5, ltf=0.5e-4)
    np.testing.assert_allclose(p, [0.5, 0.05, 0.005, 0.0005, 0.00005], rtol=1e-12)
    p10 = gba.target_frequencies(10, htf=0.1, ltf=0.001)
    ratios = p10[1:] / p10[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)  # constant ratio = geometric
    assert p10[0] == pytest.approx(0.1) and p10[-1] == pytest.approx(0.001)
    assert gba.target_frequencies(1, htf=0.02).tolist() == [0.02]


def test_group_ids_contiguous_blocks():
    g = gba.group_ids(10, 3)
    assert g.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    cfg = gba.make_config(10, groups=3, htf=0.4, ltf=0.1)
    np.testing.assert_allclose(np.asarray(cfg.targets), np.array([0.4, 0.2, 0.1])[g], rtol=1e-6)


def _numpy_rule(bias, window, groups, targets, gm, gp, eps, low=-1.0, high=0.0):
    """Direct statement of the notes' rule on the full B x M window buffer."""
    y = np.concatenate(window, axis=0)
    p_hat = (y > 0).mean(axis=0)
    r = np.maximum(y.max(axis=0), 0)
    out = bias.copy()
    for m in range(bias.size):
        k = groups[m]
        members = (groups == k) & (r > 0)
        s_k = r[members].mean() if members.any() else 0.0
        if p_hat[m] > targets[m]:
            out[m] = max(bias[m] - gm * r[m], low)
        elif p_hat[m] < eps:
            out[m] = min(bias[m] + gp * s_k, high)
    return out


def test_rule_matches_numpy_on_hand_built_window():
    rng = np.random.default_rng(0)
    M, K = 12, 3
    bias = rng.uniform(-0.95, -0.02, M)
    bias[0] = -0.99  # will hit the -1 clamp when over-active
    bias[5] = -0.01  # will hit the 0 clamp when dead
    shifts = np.array([2.0, 0.5, 0.0, -0.3, -5, -5, 1.0, 0.2, -0.1, -5, -0.5, 0.1])
    window = [rng.normal(size=(7, M)) + shifts for _ in range(3)]  # -5: never fires (dead)
    with jax.enable_x64(True):
        cfg = gba.make_config(M, groups=K, htf=0.6, ltf=0.15, gamma_minus=0.1, gamma_plus=0.2, eps=1e-6,
                              update_every=3, dtype=jnp.float64)
        stats = gba.init_stats(M, jnp.float64)
        b = jnp.asarray(bias)
        for step, y in enumerate(window):
            stats = gba.accumulate(stats, jnp.asarray(y))
            b, stats, closed = gba.maybe_update(b, stats, jnp.int32(step), cfg)
            assert bool(closed) == (step == 2)
        want = _numpy_rule(bias, window, np.asarray(cfg.groups), np.asarray(cfg.targets), 0.1, 0.2, 1e-6)
        np.testing.assert_allclose(np.asarray(b), want, rtol=1e-12, atol=1e-12)
        assert int(stats.samples) == 0 and float(jnp.sum(stats.counts)) == 0  # cleared
    # the window really exercised all three branches and both clamps
    assert np.any(want < bias) and np.any(want > bias) and np.any(want == bias)
    assert want[0] == -1.0 and want[5] == 0.0


def test_group_without_positive_peaks_leaves_dead_unchanged():
    cfg = gba.make_config(4, groups=2, htf=0.5, ltf=0.1, update_every=1)
    stats = gba.accumulate(gba.init_stats(4), -jnp.ones((5, 4), jnp.float32))  # nothing fires anywhere
    b = gba.update_bias(-0.5 * jnp.ones(4, jnp.float32), stats, cfg)
    np.testing.assert_array_equal(np.asarray(b), -0.5 * np.ones(4))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(groups=11), "groups"),
        (dict(htf=1.2), "htf"),
        (dict(htf=0.0), "htf"),
        (dict(ltf=-0.1), "ltf"),
        (dict(htf=0.01, ltf=0.1), "htf"),
        (dict(targets=[0.1, 0.2]), "targets"),
        (dict(targets=[0.5, 1.5]), "targets"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gba.make_config(10, **kwargs)


def _rule(bias, counts, peaks, samples):
    cfg = gba.make_config(bias.shape[-1], groups=2, htf=0.5, ltf=0.05, dtype=bias.dtype)
    return gba.update_bias(bias, gba.WindowStats(counts, peaks, samples), cfg)


def _rule_inputs(key, dtype):
    k1, k2, k3 = jax.random.split(key, 3)
    bias = -jax.random.uniform(k1, (8,), dtype)
    counts = jax.random.randint(k2, (8,), 0, 40).at[0].set(0)
    peaks = jnp.where(counts > 0, jax.random.uniform(k3, (8,), dtype), 0)
    return bias, counts, peaks, jnp.int32(64)


class TestBiasRuleContract(ContractSuite):
    case = ContractCase(
        name="gba.update_bias",
        fn=_rule,
        make_inputs=_rule_inputs,
        bad_inputs=[BadInput(args=lambda: (jnp.full((8,), jnp.nan), jnp.zeros(8, jnp.int32), jnp.zeros(8), 1),
                             match="bias")],
    )
