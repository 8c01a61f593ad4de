"""Pattern-coupled KroSBL for block-sparse signals (He & Joseph, TSP 2024).

**PC-KroSBL** (`PCKroSBL`, `pc_krosbl`): AM-KroSBL whose prior variances on the *coupled* factors
are γ̃_i = C_β g_i, g_i >= 0, with the tridiagonal coupling matrix C_β = I + β(super + sub
diagonal ones) (no wrap-around); the prior is x ~ CN(0, diag(γ̃_1 ⊗ ... ⊗ γ̃_I)). It is the "pc"
row of the Kronecker EM engine (`kroengine`). One EM iteration:

1. prune: zero γ̃_i[j] < max(r_i max γ̃_i, r_abs) (fixed shapes; C_β is restricted to the kept
   rows and columns by masking);
2. E-step: the matrix-free Kronecker posterior (`_estep.posterior_eig_m`), d = diag Σ + |μ|²;
3. M-step: at most `inner_max` (9) Gauss–Seidel sweeps, stopping when the relative change of
   ⊗γ̃_i is <= inner_tol (1e-4). In a sweep, factor i gets the AM target
   t_i[j] = (1/∏_{k≠i} l_k) Σ_{n: n_i=j} d_n / ∏_{k≠i} γ̃_k[n_k] (average over active entries);
   an uncoupled factor takes γ̃_i = t_i, a coupled one solves g_i = argmin_{g>=0} ||C_β g − t_i||
   (Lawson–Hanson NNLS, `nnls.nnls_gram`) and takes γ̃_i = floor + C_β g_i (floor = 1e-5);
   then γ̃_i ← γ̃_i/||γ̃_i|| for i < I and the last factor absorbs the scale.
4. stop when ||γ̃_t − γ̃_{t−1}|| / ||γ̃_{t−1}|| <= tol for the full (zero-filled) γ̃ = ⊗γ̃_i.

The estimate is the posterior mean under the final, pruned prior. PC-SBL and cSBL on a
Kronecker dictionary (the IRS baselines) live in `pcsbl` and are re-exported here.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import struct

from jsparse.core import runner
from jsparse.core import validation as V
from jsparse.sbl import _common as C
from jsparse.sbl._estep import kron_dense_posterior
from jsparse.sbl._mstep import FactorUpdate, coupled_update
from jsparse.sbl.kroengine import KroEngine
from jsparse.sbl.pcsbl import PCSBL, csbl_kron, pc_sbl

__all__ = ["PCKroSBL", "pc_krosbl", "PCSBL", "pc_sbl", "csbl_kron", "coupling_matrix", "kron_dense_posterior",
           "PC_PRUNE"]

PC_PRUNE = (1e-2, 1e-1, 1e-2)  # reference relative thresholds for (IRS cascaded, MS, BS)


def coupling_matrix(n: int, beta, dtype=jnp.float32) -> jax.Array:
    """(n, n) C_β = I + β (ones on the first super- and sub-diagonal); no wrap-around."""
    off = jnp.eye(n, k=1, dtype=dtype) + jnp.eye(n, k=-1, dtype=dtype)
    return jnp.eye(n, dtype=dtype) + jnp.asarray(beta, dtype) * off


class PCKroSBL(KroEngine, struct.PyTreeNode):
    """PC-KroSBL as a solver object; data are (y (M,), factors (I tuple of (M_i, N_i))).

    Attributes:
      beta: coupling strength β in [0, 1) (a pytree leaf: differentiable, vmappable).
      noise_var: known σ² (a pytree leaf), or None to learn it by EM.
      coupled: indices of the coupled factors (static; default (0, 2)).
      prune: relative thresholds, None for PC_PRUNE (3 factors) or 1e-2; prune_abs: absolute one.
      floor: constant added to C_β g_i. tol, inner_tol, inner_max, max_iters, adjoint: as in
        `pc_krosbl` (static).
      normalise: solve in normalised units and map back (`_scale`; static, default False).
    """

    beta: Any = 0.8
    noise_var: Any = None
    coupled: tuple = struct.field(pytree_node=False, default=(0, 2))
    prune: Any = struct.field(pytree_node=False, default=None)
    prune_abs: float = struct.field(pytree_node=False, default=1e-4)
    floor: float = struct.field(pytree_node=False, default=1e-5)
    tol: float = struct.field(pytree_node=False, default=1e-4)
    inner_tol: float = struct.field(pytree_node=False, default=1e-4)
    inner_max: int = struct.field(pytree_node=False, default=9)
    max_iters: int = struct.field(pytree_node=False, default=150)
    adjoint: Any = struct.field(pytree_node=False, default="none")
    normalise: bool = struct.field(pytree_node=False, default=False)
    method = "pc"  # the engine's strategy row (not a setting)

    def relative_prune(self, n_factors: int) -> tuple:
        """Per-factor relative thresholds (PC_PRUNE for three factors, else 1e-2, when None)."""
        prune = (PC_PRUNE if n_factors == 3 else 1e-2) if self.prune is None else self.prune
        return C.check_per_factor_prune(prune, n_factors)

    def _cmats(self, dims: Sequence[int], dtype) -> tuple:
        coupled = [c % len(dims) for c in self.coupled]
        return tuple(coupling_matrix(n, self.beta, dtype) if i in coupled else jnp.eye(n, dtype=dtype)
                     for i, n in enumerate(dims))

    def initial_gammas(self, dims: Sequence[int], dtype) -> tuple:
        """The reference start g_i = 1: γ̃_i = C_β 1 on coupled factors and 1 elsewhere."""
        return tuple(jnp.sum(cm, axis=1) for cm in self._cmats(dims, dtype))

    def factor_update(self, dims: Sequence[int], dtype) -> FactorUpdate:
        """The M-step's per-factor update: NNLS through C_β on coupled factors, the AM target elsewhere."""
        cmats = self._cmats(dims, dtype)
        coupled = [c % len(dims) for c in self.coupled]

        def update(i: int, t: jax.Array, kept: jax.Array) -> jax.Array:
            return coupled_update(t, kept, cmats[i], self.floor) if i in coupled else jnp.where(kept, t, 0)

        return update


def _check_coupled(coupled: Any, n_factors: int) -> tuple:
    if isinstance(coupled, (int,)) and not isinstance(coupled, bool):
        coupled = (coupled,)
    if not isinstance(coupled, (list, tuple)):
        raise ValueError(f"coupled: expected a tuple of factor indices, got {coupled!r}")
    out = []
    for c in coupled:
        c = V.check_int(c, "coupled", minimum=-n_factors, maximum=n_factors - 1)
        out.append(c % n_factors)
    if len(set(out)) != len(out):
        raise ValueError(f"coupled: repeated factor index in {coupled!r}")
    return tuple(out)


def pc_krosbl(
    y: jax.Array,
    factors: Sequence[jax.Array],
    *,
    beta: float = 0.8,
    coupled: Sequence[int] = (0, 2),
    noise_var: float | jax.Array | None = None,
    max_iters: int = 150,
    tol: float = 1e-4,
    prune: float | Sequence[float] | None = None,
    prune_abs: float = 1e-4,
    inner_tol: float = 1e-4,
    inner_max: int = 9,
    floor: float = 1e-5,
    adjoint: str | runner.Adjoint = "none",
    trace_fn=None,
    normalise: bool = False,
) -> C.SBLResult:
    """Pattern-coupled AM-KroSBL for Kronecker-structured, block-sparse x: validate, build a `PCKroSBL`, run it.

    Args:
      y: (M,) measurements, M = prod(M_i); real or complex.
      factors: I >= 2 matrices H_i (M_i, N_i) of y's dtype; y ≈ (H_1 ⊗ ... ⊗ H_I) x.
      beta: coupling strength β in [0, 1) (β = 0 is AM-KroSBL with the capped inner loop, the
        1e-5 floor and NNLS(I, t) = max(t, 0)).
      coupled: indices of the coupled factors (reference: (0, 2), the IRS cascaded angle and the
        BS angle; the MS factor is single-path).
      noise_var: known σ² > 0 (the IRS experiment), or None to learn it by EM from 0.1 var(y).
      max_iters: EM iteration budget (static); tol: outer relative-change tolerance.
      prune: relative thresholds r_i in [0, 1) (default PC_PRUNE for I = 3, else 1e-2);
        prune_abs: absolute threshold on γ̃_i (reference 1e-4).
      inner_tol, inner_max: M-step sweeps stop at relative change <= inner_tol or after inner_max.
      floor: constant added to C_β g_i (reference 1e-5).
      adjoint: "none", "unrolled", "implicit" or an adjoint value (jsparse.core.adjoint); NNLS
        differentiates with its active set held fixed.
      trace_fn: optional `(state, y, factors) -> scalar` recorded after every iteration.
      normalise: solve in normalised units and map x, γ̃, σ² back (as in `krosbl`; default False).

    Returns:
      SBLResult(x (N,), gammas (I tuple of γ̃_i, pruned), noise_var, iterations, converged, trace).
    """
    y, factors = C.check_y_factors(y, factors)
    n_f = len(factors)
    C.check_scalars(beta=beta, prune_abs=prune_abs, inner_tol=inner_tol, floor=floor)
    V.check_in_range(beta, "beta", 0.0, 1.0, high_inclusive=False)
    C.check_noise_var(noise_var)
    V.check_positive(prune_abs, "prune_abs", allow_zero=True)
    V.check_positive(inner_tol, "inner_tol", allow_zero=True)
    V.check_positive(floor, "floor", allow_zero=True)
    rdt = C.real_dtype(y.dtype)
    solver = PCKroSBL(
        jnp.asarray(beta, rdt), None if noise_var is None else jnp.asarray(noise_var, rdt),
        coupled=_check_coupled(coupled, n_f),
        prune=None if prune is None else C.check_per_factor_prune(prune, n_f), prune_abs=float(prune_abs),
        floor=float(floor), tol=C.check_tol(tol), inner_tol=float(inner_tol),
        inner_max=V.check_int(inner_max, "inner_max", minimum=1),
        max_iters=V.check_int(max_iters, "max_iters", minimum=1), adjoint=runner.check_adjoint(adjoint),
        normalise=C.check_flag(normalise, "normalise"),
    )
    return C.run_solver(solver, (y, factors), None, trace_fn)
