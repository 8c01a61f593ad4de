"""Gradients of a scalar loss of x w.r.t. y and the factors: unrolled and implicit vs central FD (x64)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse.core.kron import kron_dense
from jsparse.sbl import krosbl, sbl
from tests.sbl.problems import small_problem

N2, M2 = (5, 6), (4, 5)


def _problem():
    return small_problem(jax.random.PRNGKey(7), n=N2, m=M2, k=2, snr_db=20.0)


def _directional_fd(loss, params, direction, eps=1e-6):
    plus = jax.tree_util.tree_map(lambda p, d: p + eps * d, params, direction)
    minus = jax.tree_util.tree_map(lambda p, d: p - eps * d, params, direction)
    return (loss(plus) - loss(minus)) / (2 * eps)


def _check(loss, params, rtol):
    grads = jax.grad(loss)(params)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    rng = np.random.default_rng(0)
    for _ in range(2):
        direction = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.standard_normal(p.shape)), params)
        analytic = sum(jnp.vdot(g, d) for g, d in zip(leaves, jax.tree_util.tree_leaves(direction)))
        numeric = _directional_fd(loss, params, direction)
        np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=1e-8)


# Each method once with known and once with learned noise across the two adjoints (test time).
@pytest.mark.parametrize("method,learn", [("svd", False), ("am", True), ("ksbl", False)])
def test_unrolled_gradient(x64, method, learn):
    p = _problem()
    w = jax.random.normal(jax.random.PRNGKey(1), p.x.shape, jnp.float64)
    nv = None if learn else float(p.noise_var)

    def loss(params):
        y, factors = params
        res = krosbl(y, factors, method=method, noise_var=nv, max_iters=8, tol=0.0, adjoint="unrolled")
        return jnp.sum(w * res.x)

    _check(loss, (p.y, p.factors), rtol=1e-5)


@pytest.mark.parametrize("method,learn", [("svd", True), ("am", False), ("ksbl", True)])
def test_implicit_gradient(x64, method, learn):
    p = _problem()
    w = jax.random.normal(jax.random.PRNGKey(1), p.x.shape, jnp.float64)
    nv = None if learn else float(p.noise_var)
    kw = dict(method=method, noise_var=nv, max_iters=3000, tol=1e-13, inner_tol=1e-12)
    assert bool(krosbl(p.y, p.factors, **kw).converged)

    def loss(params, adjoint):
        y, factors = params
        return jnp.sum(w * krosbl(y, factors, adjoint=adjoint, **kw).x)

    grads = jax.grad(lambda prm: loss(prm, "implicit"))((p.y, p.factors))
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    rng = np.random.default_rng(0)
    for _ in range(2):
        direction = jax.tree_util.tree_map(lambda q: jnp.asarray(rng.standard_normal(q.shape)), (p.y, p.factors))
        analytic = sum(jnp.vdot(g, d) for g, d in zip(leaves, jax.tree_util.tree_leaves(direction)))
        numeric = _directional_fd(lambda prm: loss(prm, "none"), (p.y, p.factors), direction)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("adjoint", ["unrolled", "implicit"])
def test_classic_sbl_gradient(x64, adjoint):
    p = _problem()
    H = kron_dense(p.factors)
    w = jax.random.normal(jax.random.PRNGKey(1), p.x.shape, jnp.float64)
    if adjoint == "unrolled":
        kw = dict(noise_var=None, max_iters=8, tol=0.0)
    else:
        kw = dict(noise_var=None, max_iters=3000, tol=1e-13)
        assert bool(sbl(p.y, H, **kw).converged)

    def loss(params, adj):
        y, h = params
        return jnp.sum(w * sbl(y, h, adjoint=adj, **kw).x)

    grads = jax.grad(lambda prm: loss(prm, adjoint))((p.y, H))
    rng = np.random.default_rng(0)
    direction = jax.tree_util.tree_map(lambda q: jnp.asarray(rng.standard_normal(q.shape)), (p.y, H))
    pairs = zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(direction))
    analytic = sum(jnp.vdot(g, d) for g, d in pairs)
    numeric = _directional_fd(lambda prm: loss(prm, "none" if adjoint == "implicit" else adjoint), (p.y, H), direction)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method,learn", [("am", True), ("svd", False)])
def test_grad_through_users_scan_of_step_matches_krosbl(x64, method, learn):
    """jax.grad through a user's own lax.scan of KroSBL.step then result == grad of krosbl (unrolled)."""
    from jsparse.sbl import KroSBL

    p = _problem()
    w = jax.random.normal(jax.random.PRNGKey(1), p.x.shape, jnp.float64)
    n = 8
    nv = None if learn else float(p.noise_var)

    def by_hand(params):
        y, factors = params
        solver = KroSBL(method=method, noise_var=None if learn else jnp.asarray(nv), max_iters=n, tol=0.0,
                        adjoint="unrolled")
        state = solver.init(y, factors)
        state, _ = jax.lax.scan(lambda st, _: (solver.step(st, y, factors), None), state, None, length=n)
        return jnp.sum(w * solver.result(state, y, factors).x)

    def solved(params):
        y, factors = params
        return jnp.sum(w * krosbl(y, factors, method=method, noise_var=nv, max_iters=n, tol=0.0, adjoint="unrolled").x)

    params = (p.y, p.factors)
    np.testing.assert_allclose(by_hand(params), solved(params), rtol=1e-12)
    g_hand = jax.tree_util.tree_leaves(jax.grad(by_hand)(params))
    g_solve = jax.tree_util.tree_leaves(jax.grad(solved)(params))
    for a, b in zip(g_hand, g_solve):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
