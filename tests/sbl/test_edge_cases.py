"""y = 0, a diverging trial under vmap, and max_iters too small."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse.core.kron import kron_dense
from jsparse.sbl import krosbl, sbl
from tests.sbl.problems import small_problem


# Each method once, and both noise settings across them (each case is one more compilation).
@pytest.mark.parametrize("method,noise_var", [("svd", None), ("am", 0.1), ("ksbl", None), ("svd", 0.1)])
def test_zero_measurement_gives_zero(method, noise_var):
    p = small_problem(jax.random.PRNGKey(0), jnp.float32)
    res = krosbl(jnp.zeros_like(p.y), p.factors, method=method, noise_var=noise_var)
    for leaf in jax.tree_util.tree_leaves(res):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            assert bool(jnp.all(jnp.isfinite(leaf)))
    np.testing.assert_array_equal(res.x, 0)


def test_zero_measurement_classic():
    p = small_problem(jax.random.PRNGKey(0), jnp.float32)
    res = sbl(jnp.zeros_like(p.y), kron_dense(p.factors))
    assert bool(jnp.all(jnp.isfinite(res.noise_var))) and bool(jnp.all(jnp.isfinite(res.gammas[0])))
    np.testing.assert_array_equal(res.x, 0)


@pytest.mark.parametrize("method", ["svd", "am"])
def test_one_diverging_trial_under_vmap(method):
    """A NaN trial stops with converged=False; its neighbours equal their single runs."""
    probs = [small_problem(jax.random.PRNGKey(s), jnp.float32) for s in range(3)]
    ys = jnp.stack([p.y for p in probs]).at[1, 3].set(jnp.nan)  # traced under vmap: no ValueError
    fs = tuple(jnp.stack([p.factors[i] for p in probs]) for i in range(3))
    run = jax.vmap(lambda y, f: krosbl(y, f, method=method, max_iters=60))
    out = run(ys, fs)
    assert not bool(out.converged[1])
    for i in (0, 2):
        single = krosbl(probs[i].y, probs[i].factors, method=method, max_iters=60)
        assert bool(out.converged[i]) == bool(single.converged)
        assert int(out.iterations[i]) == int(single.iterations)
        np.testing.assert_allclose(out.x[i], single.x, rtol=1e-4, atol=1e-5)
        assert bool(jnp.all(jnp.isfinite(out.x[i])))


def test_budget_exhausted_reports_not_converged():
    p = small_problem(jax.random.PRNGKey(0), jnp.float32)
    res = krosbl(p.y, p.factors, max_iters=2)
    assert int(res.iterations) == 2 and not bool(res.converged)
