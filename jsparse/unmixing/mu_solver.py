"""The multiplicative-update engine as a solver object: `MUSolver`, shared by RRLbS and the NMF baselines.

`MUSolver` holds settings only (a frozen pytree). Its data argument is the image Y (L, N)::

    solver = RRLbS(4)                                  # or NMF(4), L12NMF(4), L21NMF(4), MUSolver(4, ...)
    state = solver.init(Y, key)                        # floored VCA-FCLS start (or solver.init(Y, M0=M0, A0=A0))
    state = solver.step(state, Y)                      # one sweep M -> A -> h (jsparse.unmixing.mu)
    result = solver.result(state, Y)                   # UnmixingResult

Everything derived from the data and the start is resolved once in `init` and carried in the state
(`MUState.params`): lam = None becomes `sparsity_lambda(Y)`, gamma = None becomes lam / 8, and the
l2,1 scale tau (from the starting residual) and the smoothing eps (from Y) are fixed there. `step`
therefore takes only Y. `solve_mu` runs a solver with `jsparse.core.runner` (jitted), and
`mu_method` is the validating front end of `rrlbs`, `nmf`, `l12_nmf` and `l21_nmf`.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jsparse.core import runner
from jsparse.core.validation import as_key, check_array, check_choice, check_int, check_positive
from jsparse.unmixing._common import UnmixingResult, check_image, check_num_endmembers
from jsparse.unmixing.mu import GUIDANCES, LOSSES, MUConfig, MUState, mu_init, mu_params, mu_step
from jsparse.unmixing.start import INITS, start_point

__all__ = ["MUSolver", "solve_mu", "mu_method"]


def _static(default):
    return struct.field(pytree_node=False, default=default)


class MUSolver(struct.PyTreeNode):
    """One member of the multiplicative-update family (objective in `jsparse.unmixing.mu`); data: Y (L, N).

    Attributes (pytree leaves: differentiable / vmappable, no recompilation):
      lam: sparsity weight >= 0; None = `sparsity_lambda(Y)` (resolved in `init`).
      gamma: map regulariser >= 0 (guidance "learned"); None = lam / 8.
      delta: weight of the soft sum-to-one row. budget: mean of the guidance map.
      init_floor: abundance floor of the computed start (`floor_start`; a given start is used as is).
    Attributes (static):
      num_endmembers: R (needed only to compute a start in `init`).
      loss: "l21" | "fro". guidance: "learned" | "exponent" | "uniform" | "none". p: exponent in (0, 1].
      start: "vca_screened" (VCA-FCLS on outlier-screened bands; = "vca" without outlier bands) | "vca" |
        "vca_whitened" | "random", the start `init` computes from a key; fcls_iters its FCLS budget.
      max_iters, tol: budget and relative-objective-change stopping rule.
      adjoint: "none" | "unrolled" or an adjoint value (no implicit adjoint: the fixed points are not isolated).
    """

    num_endmembers: int = struct.field(pytree_node=False)
    lam: Any = None
    gamma: Any = None
    delta: Any = 15.0
    budget: Any = 1.0
    init_floor: Any = 1e-2
    loss: str = _static("l21")
    guidance: str = _static("learned")
    p: float = _static(0.5)
    start: str = _static("vca_screened")
    fcls_iters: int = _static(200)
    max_iters: int = _static(1000)
    tol: float = _static(1e-6)
    adjoint: Any = _static("none")

    @property
    def config(self) -> MUConfig:
        """The engine's static settings."""
        return MUConfig(self.loss, self.guidance, float(self.p))

    def init(self, Y: jax.Array, key: jax.Array | None = None, M0: jax.Array | None = None,
             A0: jax.Array | None = None) -> MUState:
        """State at the given start (M0 (L, R), A0 (R, N)), or at the floored start computed from `key`."""
        if M0 is None or A0 is None:
            if key is None:
                raise ValueError("key: a PRNG key is needed to compute the start (or pass M0 and A0)")
            key = as_key(key, "key")
            M0, A0 = start_point(Y, self.num_endmembers, key, self.start, self.fcls_iters, self.init_floor)
        M0, A0 = M0.astype(Y.dtype), A0.astype(Y.dtype)
        params = mu_params(self.config, Y, M0, A0, self.lam, self.gamma, self.delta, self.budget)
        return mu_init(self.config, Y, M0, A0, params)

    def step(self, state: MUState, Y: jax.Array) -> MUState:
        """One sweep M -> channel weights -> A -> h (pure; jit / vmap / lax.scan-able)."""
        return mu_step(state, self.config, Y, self.tol)

    def objective(self, state: MUState, Y: jax.Array) -> jax.Array:
        """The objective at the state (the default trace)."""
        return state.objective

    def result(self, state: MUState, Y: jax.Array, info: runner.RunInfo | None = None) -> UnmixingResult:
        """UnmixingResult; abundances clipped at 0 and renormalised to sum to one per pixel."""
        info = runner.info_from_state(state) if info is None else info
        A = jnp.maximum(state.A, 0.0)
        A = A / jnp.maximum(jnp.sum(A, axis=0, keepdims=True), jnp.finfo(Y.dtype).tiny)
        return UnmixingResult(state.M, A, state.h, info.trace, info.iterations, info.converged)


@jax.jit
def solve_mu(solver: MUSolver, Y: jax.Array, key: jax.Array | None = None, M0: jax.Array | None = None,
             A0: jax.Array | None = None) -> UnmixingResult:
    """Run `solver` from `solver.init(Y, key, M0, A0)` with its adjoint (jitted; no validation)."""
    return runner.solve(solver, Y, state=solver.init(Y, key, M0, A0), trace_fn=solver.objective)


def _check_settings(loss, guidance, p, start, max_iters, fcls_iters, tol, delta, budget, init_floor, lam, gamma):
    check_choice(loss, "loss", LOSSES)
    check_choice(guidance, "guidance", GUIDANCES)
    if not (0.0 < p <= 1.0):
        raise ValueError(f"p: expected a value in (0, 1], got {p!r}")
    check_choice(start, "init", INITS)
    check_int(max_iters, "max_iters", minimum=1)
    check_int(fcls_iters, "fcls_iters", minimum=1)
    for value, name in ((tol, "tol"), (delta, "delta"), (init_floor, "init_floor")):
        check_positive(value, name, allow_zero=True)
    check_positive(budget, "budget")
    check_positive(lam, "lam", allow_zero=True, allow_none=True)
    # The learned map h = Proj(-lam c / (2 gamma)) needs gamma > 0 (gamma -> 0 is the one-hot limit, not a model).
    check_positive(gamma, "gamma", allow_zero=guidance != "learned", allow_none=True)


def mu_method(cls: type[MUSolver], Y, num_endmembers, *, key=None, lam=None, gamma=None, delta=15.0, budget=1.0,
              init="vca_screened", init_endmembers=None, init_abundances=None, init_floor=1e-2, max_iters=1000,
              tol=1e-6, adjoint: str | runner.Adjoint = "none", fcls_iters=200, clip_negative=False,
              **static) -> UnmixingResult:
    """Validate, build `cls(R, ...)` and run it (see `rrlbs` for the arguments; `static`: loss, guidance, p)."""
    Y = check_image(Y, clip_negative=clip_negative)
    L, N = Y.shape
    R = check_num_endmembers(num_endmembers, L)
    solver = cls(R, lam=lam, gamma=gamma, delta=delta, budget=budget, init_floor=init_floor, start=init,
                 fcls_iters=fcls_iters, max_iters=max_iters, tol=tol, **static)
    _check_settings(solver.loss, solver.guidance, solver.p, init, max_iters, fcls_iters, tol, delta, budget,
                    init_floor, lam, gamma)
    solver = solver.replace(p=float(solver.p), tol=float(tol),
                            adjoint=runner.check_adjoint(adjoint, implicit_available=False))
    if (init_endmembers is None) != (init_abundances is None):
        raise ValueError("init_endmembers: pass init_endmembers and init_abundances together")
    if init_endmembers is not None:
        M0 = check_array(init_endmembers, "init_endmembers", shape=(L, R), dtype="float", nonnegative=True)
        A0 = check_array(init_abundances, "init_abundances", shape=(R, N), dtype="float", nonnegative=True)
        return solve_mu(solver, Y, None, M0, A0)
    if key is None:
        raise ValueError("key: a PRNG key is needed for the VCA / random initialisation")
    if R > N:
        raise ValueError(f"num_endmembers: the start picks R distinct pixels, got R={R} for {N} pixels")
    return solve_mu(solver, Y, as_key(key, "key"))
