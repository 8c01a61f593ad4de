"""Contract suite registration (jit == eager, vmap == loop, no retrace, dtypes, bad inputs)."""
from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from jsparse.core.kron import kron_dense
from jsparse.sbl import kron_omp, krosbl, omp, oracle_ls, sbl
from tests.contract import BadInput, ContractCase, ContractSuite
from tests.sbl.problems import small_problem


def _kron_inputs(key, dtype):
    p = small_problem(key, dtype)
    return p.y, p.factors


def _dense_inputs(key, dtype):
    p = small_problem(key, dtype)
    return p.y, kron_dense(p.factors)


def _support_inputs(key, dtype):
    p = small_problem(key, dtype)
    return p.y, p.factors, p.supports


_Y, _F = _kron_inputs(__import__("jax").random.PRNGKey(0), jnp.float32)  # float32 works with x64 on or off
_Y = np.asarray(_Y, np.float32)
_F = tuple(np.asarray(f, np.float32) for f in _F)
_NAN_Y = _Y.copy()
_NAN_Y[0] = np.nan
_INF_F = tuple(f.copy() for f in _F)
_INF_F[1][0, 0] = np.inf

KRON_BAD = [
    BadInput(args=lambda: (_Y[:-1], _F), match="y"),
    BadInput(args=lambda: (_Y, _F[:1]), match="factors"),
    BadInput(args=lambda: (_Y, (_F[0], _F[1])), match="y"),
    BadInput(args=lambda: (_NAN_Y, _F), match="y"),
    BadInput(args=lambda: (_Y, _INF_F), match=r"factors\[1\]"),
    BadInput(args=lambda: (_Y, (_F[0], _F[1][0], _F[2])), match=r"factors\[1\]"),
    BadInput(args=lambda: (_Y, _F), kwargs={"noise_var": 0.0}, match="noise_var"),
    BadInput(args=lambda: (_Y, _F), kwargs={"noise_var": -1.0}, match="noise_var"),
    BadInput(args=lambda: (_Y, _F), kwargs={"method": "foo"}, match="method"),
    BadInput(args=lambda: (_Y, _F), kwargs={"adjoint": "foo"}, match="adjoint"),
    BadInput(args=lambda: (_Y, _F), kwargs={"prune": (1e-3, 1e-3)}, match="prune"),
]
_H = np.asarray(kron_dense([jnp.asarray(f) for f in _F]))
DENSE_BAD = [
    BadInput(args=lambda: (_Y[:-1], _H), match="H"),
    BadInput(args=lambda: (_NAN_Y, _H), match="y"),
    BadInput(args=lambda: (_Y, _H[None]), match="H"),
    BadInput(args=lambda: (_Y, _H), kwargs={"noise_var": 0.0}, match="noise_var"),
]


class TestSvdKroSBLContract(ContractSuite):
    case = ContractCase(
        name="krosbl-svd",
        fn=functools.partial(krosbl, method="svd", max_iters=20),
        make_inputs=_kron_inputs,
        # complex128 SVD-KroSBL is checked against the NumPy reference in test_krosbl, and the
        # complex128 contract runs through AM (same E-step); three dtypes keep the compile count down.
        dtypes=(jnp.float32, jnp.float64, jnp.complex64),
        bad_inputs=KRON_BAD,
        rtol=2e-3,
        atol=2e-4,
    )


class TestAmKroSBLContract(ContractSuite):
    case = ContractCase(
        name="krosbl-am",
        fn=functools.partial(krosbl, method="am", max_iters=20, noise_var=0.05),
        make_inputs=_kron_inputs,
        dtypes=(jnp.float32, jnp.complex128),
        rtol=2e-3,
        atol=2e-4,
    )


class TestKsblContract(ContractSuite):
    case = ContractCase(
        name="krosbl-ksbl",
        fn=functools.partial(krosbl, method="ksbl", max_iters=20),
        make_inputs=_kron_inputs,
        dtypes=(jnp.float64, jnp.complex64),
        rtol=2e-3,
        atol=2e-4,
    )


class TestClassicSBLContract(ContractSuite):
    case = ContractCase(
        name="sbl",
        fn=functools.partial(sbl, max_iters=20),
        make_inputs=_dense_inputs,
        dtypes=(jnp.float32, jnp.complex128),
        bad_inputs=DENSE_BAD,
        rtol=2e-3,
        atol=2e-4,
    )


class TestOmpContract(ContractSuite):
    case = ContractCase(
        name="omp",
        fn=functools.partial(omp, max_atoms=8, tol=1e-2),
        make_inputs=_dense_inputs,
        dtypes=(jnp.float32, jnp.complex128),
        bad_inputs=[BadInput(args=lambda: (_Y, _H), kwargs={"max_atoms": 10_000}, match="max_atoms")],
        select=lambda out: (out.x, out.support),
    )


class TestKronOmpContract(ContractSuite):
    case = ContractCase(
        name="kron_omp",
        fn=functools.partial(kron_omp, max_atoms=(3, 3, 3), tol=1e-2),
        make_inputs=_kron_inputs,
        dtypes=(jnp.float64, jnp.complex64),
        bad_inputs=[BadInput(args=lambda: (_Y, _F), kwargs={"max_atoms": (3, 3)}, match="max_atoms")],
        rtol=1e-3,
        atol=1e-4,
    )


class TestOracleLsContract(ContractSuite):
    case = ContractCase(
        name="oracle_ls",
        fn=oracle_ls,
        make_inputs=_support_inputs,
        dtypes=(jnp.float32, jnp.complex128),
        bad_inputs=[BadInput(args=lambda: (_Y, _F, (np.ones(5, bool),)), match="support")],
        rtol=1e-3,
        atol=1e-4,
    )


# ----------------------------------------------------------------------------- solver objects
from jsparse import sbl as S  # noqa: E402
from tests.contract import SolverCase, SolverSuite  # noqa: E402

_NV = 0.05  # a known noise variance for the known-noise registrations


def _case(name, make_solver, solve, make_inputs=_kron_inputs, **kw):
    """A float64 + complex128 registration: make_solver(n) and solve(n, *data) run n steps, tol 0."""
    return SolverCase(name=name, make_solver=make_solver, solve=solve, make_inputs=make_inputs,
                      dtypes=(jnp.float64, jnp.complex128), **kw)


def _krosbl_case(method, learn):
    nv = None if learn else _NV
    return _case(
        f"KroSBL-{method}",
        lambda n: S.KroSBL(method=method, noise_var=None if learn else jnp.asarray(_NV), max_iters=n, tol=0.0),
        lambda n, y, f: krosbl(y, f, method=method, noise_var=nv, max_iters=n, tol=0.0),
    )


class TestKroSBLSvdSolver(SolverSuite):
    case = _krosbl_case("svd", learn=True)


class TestKroSBLAmSolver(SolverSuite):
    case = _krosbl_case("am", learn=False)


class TestKroSBLKsblSolver(SolverSuite):
    case = _krosbl_case("ksbl", learn=True)


class TestPCKroSBLSolver(SolverSuite):
    case = _case(
        "PCKroSBL",
        lambda n: S.PCKroSBL(beta=jnp.asarray(0.6), noise_var=jnp.asarray(_NV), max_iters=n, tol=0.0),
        lambda n, y, f: S.pc_krosbl(y, f, beta=0.6, noise_var=_NV, max_iters=n, tol=0.0),
    )


class TestSBLDenseSolver(SolverSuite):
    case = _case("SBL-dense", lambda n: S.SBL(max_iters=n, tol=0.0),
                 lambda n, y, h: sbl(y, h, max_iters=n, tol=0.0), _dense_inputs)


class TestSBLFactorsSolver(SolverSuite):
    case = _case("SBL-factors", lambda n: S.SBL(noise_var=jnp.asarray(_NV), max_iters=n, tol=0.0),
                 lambda n, y, f: sbl(y, f, noise_var=_NV, max_iters=n, tol=0.0))


class TestPCSBLDenseSolver(SolverSuite):
    case = _case("PCSBL-dense",
                 lambda n: S.PCSBL(beta=0.9, noise_var=jnp.asarray(_NV), max_iters=n, tol=0.0),
                 lambda n, y, h: S.pc_sbl(y, h, noise_var=_NV, max_iters=n, tol=0.0), _dense_inputs)


class TestPCSBLFactorsSolver(SolverSuite):
    case = _case("PCSBL-factors", lambda n: S.PCSBL(beta=0.9, max_iters=n, tol=0.0),
                 lambda n, y, f: S.pc_sbl(y, f, max_iters=n, tol=0.0))


class TestOMPSolver(SolverSuite):
    case = _case("OMP", lambda n: S.OMP(max_atoms=n, tol=0.0), lambda n, y, h: omp(y, h, max_atoms=n, tol=0.0),
                 _dense_inputs)


class TestKronOMPSolver(SolverSuite):
    # The budget of N-way OMP is set by the per-mode caps (here 10 steps); every accepted step
    # grows some index set, so 7 steps reach the final estimate of (3, 3, 3) and later steps are
    # rejected (no change to x or the support): compare those, not the step counts.
    case = _case("KronOMP", lambda n: S.KronOMP(max_atoms=(3, 3, 3), tol=0.0),
                 lambda n, y, f: kron_omp(y, f, max_atoms=(3, 3, 3), tol=0.0),
                 select=lambda out: (out.x, out.support, out.noise_var))


class TestKroSBLNormalisedSolver(SolverSuite):
    # normalise=True: the state is in normalised units; a user's scan of step on the data as given matches the
    # solve function (the scaling happens inside init / step / result).
    case = _case("KroSBL-svd-normalised", lambda n: S.KroSBL(method="svd", max_iters=n, tol=0.0, normalise=True),
                 lambda n, y, f: krosbl(y, f, method="svd", max_iters=n, tol=0.0, normalise=True))

