"""Kronecker-structured SBL: SVD-KroSBL, AM-KroSBL and the KSBL baseline (He & Joseph, TSP 2024).

EM for y = (H_1 ⊗ ... ⊗ H_I) x + n with the prior x ~ N(0, diag(γ_1 ⊗ ... ⊗ γ_I)); each method is
a row of the Kronecker EM engine's strategy table (`kroengine.METHODS`):

| method | E-step | M-step | default pruning (known σ² / learned σ²) |
|--------|--------|--------|------------------------------------------|
| "svd"  | M_i x M_i eigh | successive rank-one SVD of d | 1e-3 / 5e-4 |
| "am"   | M_i x M_i eigh | AM sweeps to convergence + normalisation | 1e-2 / 5e-3 |
| "ksbl" | N_i x N_i eigh | one AM sweep (+ scale normalisation*) | 1e-2 / 5e-3 |

(*) The reference KSBL does not normalise; normalising leaves ⊗γ_i, hence every output, unchanged
and makes the fixed point unique, which the implicit adjoint needs.

`KroSBL` is the solver object (settings only; data (y, factors)); `krosbl` validates, builds one
(or a `pc.PCKroSBL` for method="pc") and runs it.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import struct

from jsparse.core import runner
from jsparse.core import validation as V
from jsparse.sbl import _common as C
from jsparse.sbl.kroengine import METHODS, KroEngine
from jsparse.sbl.pc import PCKroSBL

__all__ = ["KroSBL", "krosbl", "METHODS", "DEFAULT_PRUNE"]

# Relative pruning thresholds of the reference code: (known noise variance, learned noise variance).
DEFAULT_PRUNE = {"svd": (1e-3, 5e-4), "am": (1e-2, 5e-3), "ksbl": (1e-2, 5e-3)}


def _init_gammas(dims: Sequence[int], dtype) -> tuple:
    """γ_i = N_i^{-1/2} 1 for i < I and γ_I = sqrt(∏_{i<I} N_i) 1, so that ⊗γ_i = 1."""
    out, prod = [], 1.0
    for n in dims[:-1]:
        out.append(jnp.full((n,), n**-0.5, dtype))
        prod *= n
    out.append(jnp.full((dims[-1],), prod**0.5, dtype))
    return tuple(out)


class KroSBL(KroEngine, struct.PyTreeNode):
    """SVD-KroSBL, AM-KroSBL or KSBL as a solver object; data are (y (M,), factors (I tuple of (M_i, N_i))).

    Attributes:
      method: "svd", "am" or "ksbl" (a row of `METHODS`; static).
      noise_var: known σ² (a pytree leaf), or None to learn it by EM.
      prune: relative pruning threshold(s), None for `DEFAULT_PRUNE` (static); prune_abs: absolute one.
      tol, inner_tol, inner_max, max_iters, adjoint: as in `krosbl` (static).
      normalise: solve in normalised units and map back (`_scale`; static, default False). The state then
        holds normalised values; init / step / result always take the data as given.

    Example::

        solver = KroSBL(method="svd", noise_var=None, prune=None, tol=1e-4)
        state = solver.init(y, factors)
        state = solver.step(state, y, factors)     # pure; jit / vmap / lax.scan-able
        res = solver.result(state, y, factors)     # SBLResult, the same the solve function returns
    """

    method: str = struct.field(pytree_node=False, default="svd")
    noise_var: Any = None
    prune: Any = struct.field(pytree_node=False, default=None)
    prune_abs: float = struct.field(pytree_node=False, default=0.0)
    tol: float = struct.field(pytree_node=False, default=1e-4)
    inner_tol: float = struct.field(pytree_node=False, default=1e-5)
    inner_max: int = struct.field(pytree_node=False, default=100)
    max_iters: int = struct.field(pytree_node=False, default=150)
    adjoint: Any = struct.field(pytree_node=False, default="none")
    normalise: bool = struct.field(pytree_node=False, default=False)

    def relative_prune(self, n_factors: int) -> tuple:
        """Per-factor relative thresholds (the method's reference default when `prune` is None)."""
        prune = DEFAULT_PRUNE[self.method][self.noise_var is None] if self.prune is None else self.prune
        return C.check_per_factor_prune(prune, n_factors)

    def initial_gammas(self, dims: Sequence[int], dtype) -> tuple:
        return _init_gammas(dims, dtype)


def _check(y, factors, method, noise_var, max_iters, tol, prune, prune_abs, inner_tol, inner_max, adjoint, x_true):
    V.check_choice(method, "method", tuple(METHODS))
    C.check_scalars(prune_abs=prune_abs, inner_tol=inner_tol)
    y, factors = C.check_y_factors(y, factors)
    C.check_noise_var(noise_var)
    V.check_int(max_iters, "max_iters", minimum=1)
    C.check_tol(tol)
    if prune is not None:
        prune = C.check_per_factor_prune(prune, len(factors))
    V.check_positive(prune_abs, "prune_abs", allow_zero=True)
    V.check_positive(inner_tol, "inner_tol", allow_zero=True)
    V.check_int(inner_max, "inner_max", minimum=1)
    if x_true is not None:
        n = int(jnp.prod(jnp.array([f.shape[1] for f in factors])))
        x_true = V.check_array(x_true, "x_true", shape=(n,))
    return y, factors, prune, runner.check_adjoint(adjoint), x_true


def krosbl(
    y: jax.Array,
    factors: Sequence[jax.Array],
    *,
    method: str = "svd",
    noise_var: float | jax.Array | None = None,
    max_iters: int = 150,
    tol: float = 1e-4,
    prune: float | Sequence[float] | None = None,
    prune_abs: float = 0.0,
    inner_tol: float = 1e-5,
    inner_max: int = 100,
    adjoint: str | runner.Adjoint = "none",
    x_true: jax.Array | None = None,
    trace_fn: Callable[..., jax.Array] | None = None,
    normalise: bool = False,
) -> C.SBLResult:
    """Kronecker-structured sparse Bayesian learning: validate, build a `KroSBL`, run it.

    Args:
      y: (M,) measurements, M = prod(M_i); real or complex.
      factors: I >= 2 matrices H_i of shape (M_i, N_i), y's dtype; y ≈ (H_1 ⊗ ... ⊗ H_I) x.
      method: "svd" (SVD-KroSBL), "am" (AM-KroSBL), "ksbl" (the KSBL baseline) or "pc"
        (`pc.PCKroSBL` with its defaults: β = 0.8, coupled factors (0, 2), its own pruning and
        inner loop; `prune` is passed on, prune_abs/inner_tol/inner_max are not).
      noise_var: known noise variance σ² (> 0, per real/complex entry), or None to learn it by EM
        starting from 0.1 var(y).
      max_iters: EM iteration budget (static).
      tol: stop when ||γ_t − γ_{t−1}|| / ||γ_{t−1}|| <= tol for the full γ = ⊗γ_i.
      prune: relative pruning threshold(s) r_i in [0, 1): zero γ_i[j] < r_i max γ_i before each
        E-step. None uses the reference code's default for the method and noise setting (see
        DEFAULT_PRUNE); 0 disables pruning.
      prune_abs: absolute threshold (zero γ_i[j] < prune_abs); 0 in the synthetic experiments.
      inner_tol, inner_max: AM inner loop: relative change of ⊗γ_i and a sweep cap (the reference
        uses an absolute 1e-5 and no cap; the cap makes a partial M-step, still a valid EM step).
        Differentiable adjoints scan at most the adjoint's `inner_cap` (50) sweeps.
      adjoint: "none", "unrolled", "implicit" or an adjoint value (see jsparse.core.adjoint).
      x_true: optional (N,) ground truth: shorthand for `trace_fn=nmse_trace(solver, x_true)`.
      trace_fn: optional `(state, y, factors) -> scalar` recorded after every iteration.
      normalise: solve on normalised data (y / s_y, H_i / s_i with power-of-two scales, `_scale`) and map
        x, γ, σ² back, so that the result is scale-equivariant by construction: use it for data far from
        unit scale (the default False runs the reference algorithm on the data as given).

    Returns:
      SBLResult(x (N,), gammas (I tuple of (N_i,)), noise_var, iterations, converged, trace), with
      trace the (max_iters,) values of trace_fn (the NMSE for x_true; NaN after the stop) or None.
    """
    y, factors, prune, adjoint, x_true = _check(y, factors, method, noise_var, max_iters, tol, prune, prune_abs,
                                                inner_tol, inner_max, adjoint, x_true)
    noise = None if noise_var is None else jnp.asarray(noise_var, C.real_dtype(y.dtype))
    normalise = C.check_flag(normalise, "normalise")
    if method == "pc":
        solver: KroEngine = PCKroSBL(noise_var=noise, prune=prune, max_iters=max_iters, tol=float(tol), adjoint=adjoint,
                                     normalise=normalise)
    else:
        solver = KroSBL(method, noise, prune, float(prune_abs), float(tol), float(inner_tol), inner_max, max_iters,
                        adjoint, normalise)
    if x_true is not None and trace_fn is not None:
        raise ValueError("trace_fn: give either x_true or trace_fn, not both")
    return C.run_solver(solver, (y, factors), x_true, trace_fn)
