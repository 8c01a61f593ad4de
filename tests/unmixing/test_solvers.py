"""The unmixing solver objects: a user's own `lax.scan` of `step` equals the solve functions.

Registered with the shared `SolverSuite` (float64 to 1e-10; float32 too for RRLbS and FCLS): RRLbS
from the computed VCA-FCLS start and, with the exponent map and Frobenius loss, from a given start;
NMF, L12NMF, L21NMF and FCLS.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse import unmixing
from jsparse.core import runner
from tests.contract import SolverCase, SolverSuite
from tests.unmixing.helpers import R, fcls_inputs, small_scene

KEY = jax.random.PRNGKey(5)
DTYPES = (jnp.float64, jnp.float32)


def image(key, dtype):
    """(Y,): the data of the multiplicative-update solvers."""
    return (small_scene(key, dtype).Y,)


def given_start(Y):
    """A start computed from Y alone (its first R pixels, uniform abundances)."""
    return jnp.maximum(Y[:, :R], 1e-3), jnp.full((R, Y.shape[1]), 1.0 / R, Y.dtype)


def _from_given(solver, Y):
    M0, A0 = given_start(Y)
    return solver.init(Y, M0=M0, A0=A0)


def _given_case(name, cls, fn, solver_kw=None, fn_kw=None):
    """`cls(R, **solver_kw)` stepped from `given_start` vs `fn(Y, R, **fn_kw)` from the same start."""

    def solve(n, Y):
        M0, A0 = given_start(Y)
        return fn(Y, R, init_endmembers=M0, init_abundances=A0, max_iters=n, tol=0.0, **(fn_kw or {}))

    return SolverCase(name=name, make_solver=lambda n: cls(R, max_iters=n, tol=0.0, **(solver_kw or {})),
                      solve=solve, make_inputs=image, init=_from_given)  # float32: RRLbS covers the engine


class TestRRLbSSolver(SolverSuite):
    # The computed start: VCA + FCLS (20 iterations) + floor, from a key.
    case = SolverCase(
        name="RRLbS",
        make_solver=lambda n: unmixing.RRLbS(R, max_iters=n, tol=0.0, fcls_iters=20),
        solve=lambda n, Y: unmixing.rrlbs(Y, R, key=KEY, max_iters=n, tol=0.0, fcls_iters=20),
        make_inputs=image,
        dtypes=DTYPES,
        init=lambda solver, Y: solver.init(Y, KEY),
    )


class TestRRLbSExponentSolver(SolverSuite):
    case = _given_case("RRLbS exponent map, fro loss", unmixing.RRLbS, unmixing.rrlbs,
                       solver_kw={"guidance": "exponent", "loss": "fro"}, fn_kw={"map_form": "exponent", "loss": "fro"})


class TestNMFSolver(SolverSuite):
    case = _given_case("NMF", unmixing.NMF, unmixing.nmf)


class TestL12NMFSolver(SolverSuite):
    case = _given_case("L12NMF", unmixing.L12NMF, unmixing.l12_nmf, solver_kw={"lam": 0.2}, fn_kw={"lam": 0.2})


class TestL21NMFSolver(SolverSuite):
    case = _given_case("L21NMF", unmixing.L21NMF, unmixing.l21_nmf)


class TestFCLSSolver(SolverSuite):
    case = SolverCase(
        name="FCLS",
        make_solver=lambda n: unmixing.FCLS(max_iters=n, tol=0.0),
        solve=lambda n, Y, M: unmixing.fcls(Y, M, max_iters=n, tol=0.0),
        make_inputs=fcls_inputs,
        dtypes=DTYPES,
    )


def test_init_uses_the_public_start(x64):
    (Y,) = image(jax.random.PRNGKey(1), jnp.float64)
    for init in ("vca_whitened", "random"):  # "vca" is the same path without the whitening
        M0, A0 = unmixing.initial_point(Y, R, KEY, init=init, fcls_iters=30)
        state = jax.jit(unmixing.RRLbS(R, start=init, fcls_iters=30).init)(Y, KEY)
        np.testing.assert_allclose(np.asarray(state.M), np.asarray(M0), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(state.A), np.asarray(A0), rtol=1e-12, atol=1e-14)
    # The floor: columns still sum to one, nothing at zero.
    assert np.all(np.asarray(A0) > 0) and np.allclose(np.asarray(A0).sum(0), 1.0)
    raw = unmixing.vca(Y, R, key=KEY, fcls_iters=30, tol=0.0, whiten=True)
    M0, A0 = unmixing.initial_point(Y, R, KEY, init="vca_whitened", fcls_iters=30)
    Mf, Af = unmixing.floor_start(Y, raw.endmembers, raw.abundances)
    np.testing.assert_allclose(np.asarray(Mf), np.asarray(M0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(Af), np.asarray(A0), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="init"):
        unmixing.initial_point(Y, R, KEY, init="bogus")


def test_defaults_resolved_in_init(x64):
    (Y,) = image(jax.random.PRNGKey(2), jnp.float64)
    params = unmixing.RRLbS(R).init(Y, KEY).params
    lam = unmixing.sparsity_lambda(Y)
    np.testing.assert_allclose(float(params.lam), float(lam), rtol=1e-15)
    np.testing.assert_allclose(float(params.gamma), float(lam) / 8.0, rtol=1e-15)
    with pytest.raises(ValueError, match="key"):
        unmixing.RRLbS(R).init(Y)


def test_vmap_over_lam_leaf(x64):
    """lam is a pytree leaf: one program runs a batch of values (== separate runs)."""
    (Y,) = image(jax.random.PRNGKey(3), jnp.float64)

    def run(lam):
        solver = unmixing.L12NMF(R, lam=lam, max_iters=6, tol=0.0)
        return runner.solve(solver, Y, state=_from_given(solver, Y)).abundances

    lams = jnp.asarray([0.0, 0.1, 0.5])
    batched = jax.jit(jax.vmap(run))(lams)
    for i, lam in enumerate([0.0, 0.1, 0.5]):
        M0, A0 = given_start(Y)
        ref = unmixing.l12_nmf(Y, R, lam=lam, init_endmembers=M0, init_abundances=A0, max_iters=6, tol=0.0)
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(ref.abundances), rtol=1e-12)


def test_fcls_implicit_gradient_matches_unrolled(x64):
    Y, M = fcls_inputs(jax.random.PRNGKey(4), jnp.float64)

    def loss(M, adjoint, iters):
        return jnp.sum(unmixing.fcls(Y, M, max_iters=iters, tol=1e-13, adjoint=adjoint).abundances ** 2)

    g_imp = jax.grad(loss)(M, "implicit", 3000)
    g_unr = jax.grad(loss)(M, "unrolled", 1500)
    np.testing.assert_allclose(np.asarray(g_imp), np.asarray(g_unr), rtol=1e-5, atol=1e-8)
