"""SAP and magnitude pruning against a NumPy reimplementation of the reference formulas."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse import pruning
from tests.contract import BadInput, ContractCase, ContractSuite


def np_pqi(a, p, q):
    d = a.size
    if d == 0 or not np.any(a):
        return 0.0
    i = 1 - (np.mean(a**p)) ** (1 / p) / (np.mean(a**q)) ** (1 / q)
    return max(i, 0.0)


def np_sap_group(a, m, p, q, eta, gamma, beta):
    """Reference SAP on one group (flat magnitudes a, mask m): returns the new mask."""
    kept = a[m]
    d = kept.size
    i = np_pqi(kept, p, q)
    r = math.ceil(d * (1 + eta) ** (-q / (q - p)) * (1 - i) ** (q * p / (q - p)))
    c = math.floor(min(max(gamma * (d - r), 0.0), beta * d))  # = floor(d clip(gamma(1-r/d),0,beta))
    if d == 0:
        return m
    thr = np.sort(kept)[c] if c < d else np.inf
    return m & (a >= thr)


def np_mag_group(a, m, frac):
    kept = a[m]
    if kept.size == 0:
        return m
    return m & (a >= np.quantile(kept, frac))


def np_prune(params, masks, scope, group_fn):
    """Apply a group rule to the ndim > 1 leaves of a dict, by scope (neuron = last axis)."""
    names = [k for k in params if params[k].ndim > 1]
    out = dict(masks)
    if scope == "global":
        a = np.concatenate([np.abs(params[k]).ravel() for k in names])
        m = np.concatenate([masks[k].ravel() for k in names])
        new, o = group_fn(a, m), 0
        for k in names:
            out[k] = new[o:o + params[k].size].reshape(params[k].shape)
            o += params[k].size
    elif scope == "layer":
        for k in names:
            out[k] = group_fn(np.abs(params[k]).ravel(), masks[k].ravel()).reshape(params[k].shape)
    else:
        for k in names:
            a = np.abs(params[k]).reshape(-1, params[k].shape[-1])
            m = masks[k].reshape(-1, params[k].shape[-1])
            cols = [group_fn(a[:, j], m[:, j]) for j in range(a.shape[1])]
            out[k] = np.stack(cols, axis=1).reshape(params[k].shape)
    return out


def make_problem(seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    params = {
        "conv": rng.normal(size=(3, 3, 4, 6)).astype(dtype),
        "dense": (rng.standard_cauchy(size=(20, 7))).astype(dtype),
        "bias": rng.normal(size=7).astype(dtype),
    }
    masks = {k: rng.random(v.shape) > 0.3 for k, v in params.items()}
    masks["bias"] = np.ones(7, bool)
    return params, masks


@pytest.mark.parametrize("scope,p,q,eta,gamma,beta", [
    ("global", 0.5, 1.0, 0.0, 1.0, 0.9), ("layer", 0.5, 1.0, 0.0, 1.0, 0.9), ("neuron", 0.5, 1.0, 0.0, 1.0, 0.9),
    ("global", 1.0, 2.0, 0.01, 1.2, 0.5)])
def test_sap_matches_numpy(scope, p, q, eta, gamma, beta):
    for seed in range(2):  # same shapes: the second seed reuses the compiled rule
        params, masks = make_problem(seed)
        rule = pruning.SAP(p=p, q=q, eta_r=eta, gamma=gamma, beta=beta, scope=scope)
        got = rule.prune({k: jnp.asarray(v) for k, v in params.items()}, {k: jnp.asarray(v) for k, v in masks.items()})
        want = np_prune(params, masks, scope,
                        lambda a, m: np_sap_group(a.astype(np.float64), m, p, q, eta, gamma, beta))
        for k in params:
            np.testing.assert_array_equal(np.asarray(got[k]), want[k], err_msg=f"{scope} {k}")


@pytest.mark.parametrize("scope", ["global", "layer", "neuron"])
def test_magnitude_matches_numpy_quantile(scope):
    params, masks = make_problem(3)
    got = pruning.magnitude(0.2, scope=scope).prune(
        {k: jnp.asarray(v) for k, v in params.items()}, {k: jnp.asarray(v) for k, v in masks.items()})
    want = np_prune(params, masks, scope, lambda a, m: np_mag_group(a, m, 0.2))
    for k in params:
        np.testing.assert_array_equal(np.asarray(got[k]), want[k], err_msg=f"{scope} {k}")


def test_sap_count_is_floor_of_pqi_fraction_and_lt_is_point_eight():
    w = {"k": jax.random.normal(jax.random.PRNGKey(0), (40, 25))}
    m = pruning.init_masks(w)
    info = pruning.SAP().prune_with_info(w, m)
    d = 1000
    r = math.ceil(d * (1 - float(info.index)))
    assert int(info.count) == min(d - r, math.floor(0.9 * d))
    assert int(jnp.sum(info.masks["k"])) == d - int(info.count)
    rule = pruning.magnitude(0.2)
    for t in range(1, 6):
        m = rule.prune(w, m)
        assert int(jnp.sum(m["k"])) == pytest.approx(1000 * 0.8**t, abs=t)


def test_kth_smallest_exact_with_ties_and_inf():
    rng = np.random.default_rng(0)
    x = np.round(np.abs(rng.normal(size=3000)), 2).astype(np.float32)  # many ties
    x[::7] = np.inf
    x[5] = 0.0
    ref = np.sort(x)
    parts = [jnp.asarray(x[:1000]), jnp.asarray(x[1000:].reshape(50, 40))]
    f = jax.jit(pruning.kth_smallest)
    for c in [0, 1, 2, 500, 1999, 2570, 2999]:
        assert float(f(parts, c)) == ref[c]


def test_kth_smallest_rows_exact():
    rng = np.random.default_rng(1)
    a = np.round(np.abs(rng.normal(size=(5, 40))), 1).astype(np.float32)
    a[1, ::3] = np.inf
    c = np.array([0, 39, 7, 20, 13])
    got = np.asarray(jax.jit(pruning.kth_smallest_rows)(jnp.asarray(a), jnp.asarray(c)))
    np.testing.assert_array_equal(got, np.sort(a, axis=1)[np.arange(5), c])


def test_pruned_entries_stay_pruned_and_unfiltered_leaves_untouched():
    params, masks = make_problem(5)
    params, masks = {k: jnp.asarray(v) for k, v in params.items()}, {k: jnp.asarray(v) for k, v in masks.items()}
    new = pruning.SAP(scope="global").prune(params, masks)
    for k in params:
        assert not np.any(np.asarray(new[k]) & ~np.asarray(masks[k]))
    np.testing.assert_array_equal(new["bias"], masks["bias"])
    z = pruning.apply_masks(params, new)
    assert float(jnp.sum(jnp.abs(jnp.where(new["dense"], 0, z["dense"])))) == 0.0


def test_bad_inputs():
    for kw, name in [({"p": 1.0, "q": 0.5}, "p"), ({"p": 1.0, "q": 1.0}, "p"), ({"p": 0.0}, "p"),
                     ({"p": -0.5}, "p"), ({"beta": 1.5}, "beta"), ({"gamma": 0.0}, "gamma"),
                     ({"eta_r": -1.0}, "eta_r"), ({"scope": "row"}, "scope")]:
        with pytest.raises(ValueError, match=name):
            pruning.SAP(**kw)
    for frac in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError, match="fraction"):
            pruning.magnitude(frac)
    params, masks = make_problem(0)
    with pytest.raises(ValueError, match="masks"):
        pruning.SAP().prune(params, {"conv": masks["conv"], "dense": masks["dense"]})
    with pytest.raises(ValueError, match="masks"):
        pruning.SAP().prune(params, {**masks, "conv": masks["conv"][0]})
    with pytest.raises(ValueError, match="masks"):
        pruning.magnitude(0.2).prune(params, {k: v.astype(np.float32) for k, v in masks.items()})


def _inputs(key, dtype):
    k1, k2, k3 = jax.random.split(key, 3)
    return (jax.random.normal(k1, (3, 3, 2, 4), dtype), jax.random.normal(k2, (8, 5), dtype),
            jax.random.uniform(k3, (8, 5)) > 0.2)


def _sap_fn(conv, dense, dmask):
    params = {"conv": conv, "dense": dense}
    masks = {"conv": jnp.ones(conv.shape, bool), "dense": dmask}
    return pruning.SAP(scope="global").prune_with_info(params, masks)


class TestSAPContract(ContractSuite):
    case = ContractCase(
        name="sap_prune",
        fn=_sap_fn,
        make_inputs=_inputs,
        bad_inputs=[BadInput(args=lambda: (jnp.ones((3, 3, 2, 4)), jnp.ones((8, 5)), jnp.ones((5, 8)) > 0),
                             match="masks"),
                    # One NaN weight used to prune only that weight: it must name its parameter.
                    BadInput(args=lambda: (jnp.ones((3, 3, 2, 4)).at[0, 0, 0, 0].set(jnp.nan), jnp.ones((8, 5)),
                                           jnp.ones((8, 5), bool)), match=r"params\['conv'\]: contains NaN"),
                    BadInput(args=lambda: (jnp.ones((3, 3, 2, 4)), jnp.ones((8, 5)).at[2, 2].set(jnp.inf),
                                           jnp.ones((8, 5), bool)), match=r"params\['dense'\]"),
                    BadInput(args=lambda: (jnp.ones((3, 3, 2, 4)), jnp.ones((8, 5)), jnp.ones((8, 5))),
                             match=r"masks\['dense'\]: expected a boolean")],
    )


def test_sap_count_by_hand_on_remaining_weights_only():
    """PQI, d, r and c use only the unpruned weights (mask applied), r rounded up, c down.

    Remaining |w| = (16, 1, 0.81, 0.64), d = 4; the pruned entries (100, 0.01) must not count.
    p=0.5, q=1: M_0.5 = ((4+1+0.9+0.8)/4)^2 = 2.805625, M_1 = 18.45/4 = 4.6125, I = 0.391734,
      r = ceil(4 * 0.608266) = ceil(2.433) = 3, c = floor(min(4 - 3, 0.9 * 4)) = 1 -> prune 0.64.
    p=1, q=2: M_2 = sqrt(258.0657/4) = 8.032212, I = 1 - 4.6125/8.032212 = 0.425750,
      r = ceil(4 * 0.574250^2) = ceil(1.319) = 2, c = 2 -> prune 0.64 and 0.81.
    """
    w = {"k": jnp.asarray([[16.0, -1.0, 0.81], [-0.64, 100.0, 0.01]], jnp.float32)}
    m = {"k": jnp.asarray([[True, True, True], [True, False, False]])}
    for (p, q), index, r, c, kept in [((0.5, 1.0), 0.391734, 3, 1, [16.0, 1.0, 0.81]),
                                      ((1.0, 2.0), 0.425750, 2, 2, [16.0, 1.0])]:
        info = pruning.SAP(p=p, q=q).prune_with_info(w, m)
        assert float(info.index) == pytest.approx(index, abs=2e-6)
        assert (int(info.d), int(info.r), int(info.count)) == (4, r, c)
        got = sorted(np.abs(np.asarray(w["k"])[np.asarray(info.masks["k"])]).tolist(), reverse=True)
        assert got == pytest.approx(kept)
        assert float(info.index) == pytest.approx(float(pruning.pq_index(w["k"], p=p, q=q, mask=m["k"])), abs=1e-6)


@pytest.mark.parametrize("scale", [1.0, 1e25, 1e-30])
def test_global_sap_heavily_pruned_ties_and_extreme_scales(scale):
    """The fused global path (float32) against the NumPy reference: 90 % already pruned (many
    +inf entries in the selection), rounded magnitudes (ties), and weights whose PQ sums
    over/underflow in float32 unless rescaled."""
    rng = np.random.default_rng(7)
    params = {"a": (np.round(rng.normal(size=(30, 40)), 2) * scale).astype(np.float32),
              "b": (np.round(rng.standard_cauchy(size=(6, 5, 20)), 1) * scale).astype(np.float32)}
    masks = {k: rng.random(v.shape) > 0.9 for k, v in params.items()}
    for p, q in [(0.5, 1.0), (1.0, 2.0)]:
        info = pruning.SAP(p=p, q=q).prune_with_info({k: jnp.asarray(v) for k, v in params.items()},
                                                     {k: jnp.asarray(v) for k, v in masks.items()})
        want = np_prune(params, masks, "global",
                        lambda a, mm: np_sap_group(a.astype(np.float64), mm, p, q, 0.0, 1.0, 0.9))
        assert int(info.count) > 0
        for k in params:
            np.testing.assert_array_equal(np.asarray(info.masks[k]), want[k], err_msg=f"{p},{q} {k}")


def test_kth_smallest_in_the_inf_region_is_inf():
    x = jnp.asarray([3.0, jnp.inf, 1.0, jnp.inf, jnp.inf], jnp.float32)
    f = jax.jit(pruning.kth_smallest)
    assert [float(f([x], c)) for c in range(5)] == [1.0, 3.0, np.inf, np.inf, np.inf]


def test_zero_size_leaf_is_named():
    """A zero-size kernel used to fail inside the reduction ("zero-size array to reduction operation")."""
    from tests.contract import assert_clear_error

    params = {"a": jnp.zeros((0, 3)), "b": jnp.ones((2, 3))}
    masks = pruning.init_masks(params)
    for rule in (pruning.SAP(), pruning.SAP(scope="neuron")):
        assert_clear_error(rule.prune, params, masks, match=r"params\['a'\]: zero-size")
