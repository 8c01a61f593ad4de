"""PQ Index: closed forms, the six Hurley-Rickard sparsity properties (hypothesis), scopes,
the bound r, gradients, and the shared contract."""
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jsparse import pruning
from tests.contract import BadInput, ContractCase, ContractSuite, assert_clear_error

PQ = [(0.5, 1.0), (1.0, 2.0), (0.3, 1.7)]


def np_pqi(w, p, q):
    """Definition 1 with norms (not the power-mean form the library uses)."""
    w = np.abs(np.asarray(w, np.float64))
    d = w.size
    return 1.0 - d ** (1 / q - 1 / p) * np.sum(w**p) ** (1 / p) / np.sum(w**q) ** (1 / q)


_PAD = 32
_masked_pqi = jax.jit(lambda w, m, p, q: pruning.pq_index(w, p=p, q=q, mask=m), static_argnums=(2, 3))


def pqi64(w, p, q):
    """float64 PQ Index of w (length <= 32), padded with masked-out entries so one compile serves
    every length hypothesis draws (this also exercises the mask path)."""
    w = np.asarray(w, np.float64).ravel()
    if w.size > _PAD:
        with jax.enable_x64(True):
            return float(pruning.pq_index(jnp.asarray(w), p=p, q=q))
    m = np.arange(_PAD) < w.size
    with jax.enable_x64(True):
        return float(_masked_pqi(jnp.asarray(np.pad(w, (0, _PAD - w.size))), jnp.asarray(m), p, q))


vectors = st.lists(st.floats(0.01, 100.0), min_size=2, max_size=12).map(np.array)
pq_pairs = st.sampled_from(PQ)


@pytest.mark.parametrize("p,q", PQ)
def test_closed_forms(p, q):
    d = 7
    assert float(pruning.pq_index(jnp.full((d,), -3.0), p=p, q=q)) == pytest.approx(0.0, abs=1e-6)
    onehot = jnp.zeros(d).at[3].set(-2.5)
    assert float(pruning.pq_index(onehot, p=p, q=q)) == pytest.approx(1 - d ** (1 / q - 1 / p), rel=1e-6)
    assert float(pruning.pq_index(jnp.zeros(d), p=p, q=q)) == 0.0  # undefined; guarded to 0
    w = np.random.default_rng(0).normal(size=(5, 6))
    assert pqi64(w, p, q) == pytest.approx(np_pqi(w, p, q), rel=1e-10)


@settings(max_examples=40, deadline=None)
@given(w=vectors, pq=pq_pairs)
def test_bounds_scaling_cloning(w, pq):
    p, q = pq
    i = pqi64(w, p, q)
    assert -1e-12 <= i <= 1 - w.size ** (1 / q - 1 / p) + 1e-12
    assert pqi64(3.7 * w, p, q) == pytest.approx(i, abs=1e-12)  # D2 scaling
    assert pqi64(np.concatenate([w, w]), p, q) == pytest.approx(i, abs=1e-12)  # D4 cloning


@settings(max_examples=40, deadline=None)
@given(w=vectors, pq=pq_pairs, alpha=st.floats(0.1, 10.0))
def test_rising_tide_and_babies(w, pq, alpha):
    p, q = pq
    i = pqi64(w, p, q)
    if np.ptp(w) > 1e-3 * np.max(w):  # D3 needs unequal entries
        assert pqi64(w + alpha, p, q) < i
    assert pqi64(np.append(w, 0.0), p, q) > i  # P2 babies


@settings(max_examples=40, deadline=None)
@given(w=vectors, pq=pq_pairs, frac=st.floats(0.05, 0.45))
def test_robin_hood(w, pq, frac):
    p, q = pq
    i, j = int(np.argmax(w)), int(np.argmin(w))
    if w[i] - w[j] < 1e-2 * w[i]:
        return
    alpha = frac * (w[i] - w[j])  # keeps the order: w_i - alpha > w_j + alpha
    v = w.copy()
    v[i] -= alpha
    v[j] += alpha
    assert pqi64(v, p, q) < pqi64(w, p, q)  # D1


@settings(max_examples=30, deadline=None)
@given(w=vectors, pq=pq_pairs)
def test_bill_gates(w, pq):
    p, q = pq
    v = w.copy()
    v[0] = 1e6 * np.max(w)  # P1: growing one entry enough raises the index
    assert pqi64(v, p, q) > pqi64(w, p, q)


def test_masked_equals_subvector_and_scopes():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 3, 6)).astype(np.float32)
    m = rng.random(w.shape) > 0.4
    got = pruning.pq_index(jnp.asarray(w), mask=jnp.asarray(m))
    np.testing.assert_allclose(got, np_pqi(w[m], 0.5, 1.0), rtol=1e-5)
    per = pruning.pq_index_per_neuron(jnp.asarray(w), mask=jnp.asarray(m))  # last axis = neurons
    want = [np_pqi(w[..., k][m[..., k]], 0.5, 1.0) for k in range(6)]
    np.testing.assert_allclose(per, want, rtol=1e-5)
    tree = {"a": jnp.asarray(w), "b": jnp.asarray(rng.normal(size=(5, 2))), "bias": jnp.ones(3)}
    glob = pruning.pq_index(tree, p=1.0, q=2.0, filter=pruning.default_filter)
    flat = np.concatenate([w.ravel(), np.asarray(tree["b"]).ravel()])
    np.testing.assert_allclose(glob, np_pqi(flat, 1.0, 2.0), rtol=1e-5)
    layer = pruning.pq_index_per_layer(tree, filter=pruning.default_filter)
    assert layer["bias"] is None
    np.testing.assert_allclose(layer["b"], np_pqi(tree["b"], 0.5, 1.0), rtol=1e-5)


@pytest.mark.parametrize("p,q", PQ)
def test_retained_bound_is_a_lower_bound(p, q):
    rng = np.random.default_rng(2)
    bound_fn = jax.jit(pruning.retained_bound, static_argnames=("p", "q"))  # one compile, eta traced
    for _ in range(20):
        d = int(rng.integers(5, 60))
        w = rng.standard_cauchy(d) * (rng.random(d) < rng.uniform(0.1, 1.0))
        if not np.any(w):
            continue
        i = pqi64(w, p, q)
        assert np.count_nonzero(w) >= float(pruning.retained_bound(i, d, p=p, q=q)) - 1e-9
        mag = np.sort(np.abs(w))[::-1] ** p
        for r in range(1, d + 1):  # eta_r = smallest eta with tail <= eta * head
            head, tail = mag[:r].sum(), mag[r:].sum()
            if head == 0:
                continue
            bound = float(bound_fn(i, d, p=p, q=q, eta_r=tail / head))
            assert r >= bound - 1e-9 * d


def test_gradient_finite_difference(x64):
    w = jnp.array([0.3, -1.2, 0.0, 2.5, 0.7])
    f = jax.jit(functools.partial(pruning.pq_index, p=0.5, q=1.0))
    g = jax.grad(f)(w)
    assert np.all(np.isfinite(g)) and float(g[2]) == 0.0
    eps = 1e-6
    for k in (0, 1, 3, 4):
        e = jnp.zeros(5).at[k].set(eps)
        fd = (f(w + e) - f(w - e)) / (2 * eps)
        assert float(g[k]) == pytest.approx(float(fd), rel=1e-5, abs=1e-9)
    assert np.all(np.isfinite(jax.grad(f)(jnp.zeros(4))))
    assert np.all(np.isfinite(jax.grad(f)(jnp.zeros(4).at[1].set(2.0))))


def test_bad_inputs():
    w = jnp.ones(4)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"p": 1.0, "q": 1.0}, "p"), ({"p": 2.0, "q": 1.0}, "p"), ({"p": 0.0}, "p"), ({"p": -1.0}, "p")]
    for kw, name in cases:
        with pytest.raises(ValueError, match=name):
            pruning.pq_index(w, **kw)
    with pytest.raises(ValueError, match="mask"):
        pruning.pq_index({"a": w}, mask={"b": w > 0})


def _inputs(key, dtype):
    k1, k2 = jax.random.split(key)
    return jax.random.normal(k1, (6, 5), dtype), jax.random.uniform(k2, (6, 5)) > 0.3


class TestPQIndexContract(ContractSuite):
    case = ContractCase(
        name="pq_index",
        fn=lambda w, m: (pruning.pq_index(w, mask=m), pruning.pq_index_per_neuron(w, mask=m)),
        make_inputs=_inputs,
        bad_inputs=[BadInput(args=lambda: (jnp.ones(3), jnp.ones(4) > 0), match="mask"),
                    BadInput(args=lambda: (jnp.ones((6, 5)), jnp.full((6, 5), 0.5)), match="mask: expected a boolean"),
                    BadInput(args=lambda: (jnp.ones((6, 5)).at[1, 1].set(jnp.nan), jnp.ones((6, 5), bool)), match="w"),
                    BadInput(args=lambda: ("weights", jnp.ones((6, 5), bool)), match="w")],
    )


def test_pytree_inputs_are_checked_like_arrays():
    """A NaN leaf, a non-array leaf or a float/int mask raise, naming the leaf (the pytree path
    returned a number and read a 0.5 mask as a count)."""
    w = {"a": jnp.ones((3, 3)), "b": jnp.ones((2, 2)).at[0, 0].set(jnp.nan)}
    for fn in (pruning.pq_index, pruning.pq_index_per_layer):
        assert_clear_error(fn, w, match=r"w\['b'\]: contains NaN")
        assert_clear_error(fn, {"a": "x"}, match=r"w\['a'\]: expected a numeric array")
    good = {"a": jnp.ones((3, 3))}
    assert_clear_error(pruning.pq_index, good, mask={"a": jnp.full((3, 3), 0.5)},
                       match=r"mask\['a'\]: expected a boolean")
    assert_clear_error(pruning.pq_index, good, mask={"a": jnp.ones((3, 3), jnp.int32)}, match="boolean")
    assert_clear_error(pruning.pq_index_per_neuron, jnp.ones((3, 2)), mask=jnp.ones((3, 2)), match="mask")
