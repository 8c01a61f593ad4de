"""Kronecker-structured SBL: SVD-KroSBL, AM-KroSBL and the KSBL baseline (He & Joseph, TSP 2024).

EM for y = (H_1 ⊗ ... ⊗ H_I) x + n with the prior x ~ N(0, diag(γ_1 ⊗ ... ⊗ γ_I)). Each outer
iteration: prune (zero small γ_i entries) -> E-step (matrix-free, `_estep`) -> M-step (`_mstep`)
-> optional EM noise update. After the loop the estimate is the posterior mean under the pruned,
learned prior. Methods:

| method | E-step | M-step | default pruning (known σ² / learned σ²) |
|--------|--------|--------|------------------------------------------|
| "svd"  | M_i x M_i eigh | successive rank-one SVD of d | 1e-3 / 5e-4 |
| "am"   | M_i x M_i eigh | AM sweeps to convergence + normalisation | 1e-2 / 5e-3 |
| "ksbl" | N_i x N_i eigh | one AM sweep (+ scale normalisation*) | 1e-2 / 5e-3 |

(*) The reference KSBL does not normalise; normalising leaves ⊗γ_i, hence every output, unchanged
and makes the fixed point unique, which the implicit adjoint needs.
"""
from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jsparse.core import runner
from jsparse.core import validation as V
from jsparse.core.metrics import nmse
from jsparse.sbl import _common as C
from jsparse.sbl._estep import posterior_eig_m, posterior_eig_n
from jsparse.sbl._mstep import am_mstep, am_sweep, normalise, svd_mstep

__all__ = ["krosbl", "METHODS", "DEFAULT_PRUNE"]

METHODS = ("svd", "am", "ksbl")
# Relative pruning thresholds of the reference code: (known noise variance, learned noise variance).
DEFAULT_PRUNE = {"svd": (1e-3, 5e-4), "am": (1e-2, 5e-3), "ksbl": (1e-2, 5e-3)}


class KroState(NamedTuple):
    gammas: tuple  # I arrays (N_i,), real
    noise_var: jax.Array  # () real
    iteration: jax.Array
    converged: jax.Array


class _Settings(NamedTuple):
    method: str
    rel: tuple
    abs_: float
    learn_noise: bool
    tol: float
    inner_tol: float
    inner_max: int


def _posterior(settings: _Settings, y, factors, gammas, sigma2):
    fn = posterior_eig_n if settings.method == "ksbl" else posterior_eig_m
    return fn(y, factors, gammas, sigma2)


def _update(settings: _Settings, gammas, sigma2, y, factors, floor, *, differentiable: bool):
    """One EM iteration from (γ_i, σ²): prune, E-step, M-step, noise update."""
    gammas = C.prune(gammas, settings.rel, settings.abs_)
    post = _posterior(settings, y, factors, gammas, sigma2)
    d = post.diag_sigma + jnp.abs(post.mu) ** 2
    dims = [g.shape[0] for g in gammas]
    if settings.method == "svd":
        new = svd_mstep(d, dims)
    elif settings.method == "am":
        new = am_mstep(d, gammas, inner_tol=settings.inner_tol, inner_max=settings.inner_max, differentiable=differentiable)
    else:
        new = normalise(am_sweep(d, gammas))
    new_sigma2 = sigma2
    if settings.learn_noise:
        # Wipf–Rao EM update: (||y - Hμ||² + σ² Σ_n (1 - Σ_nn/γ_n)) / M.
        new_sigma2 = jnp.maximum((post.resid_sq + sigma2 * post.dof) / y.shape[0], floor)
    return tuple(new), new_sigma2


def _step(settings: _Settings, state: KroState, y, factors, noise_arg, floor) -> KroState:
    sigma2 = state.noise_var if settings.learn_noise else noise_arg
    new_g, new_s = _update(settings, state.gammas, sigma2, y, factors, floor, differentiable=False)
    change = runner.relative_change(C.full_gamma(new_g), C.full_gamma(state.gammas))
    return KroState(new_g, new_s, state.iteration + 1, change <= settings.tol)


def _step_diff(settings: _Settings, state: KroState, y, factors, noise_arg, floor) -> KroState:
    sigma2 = state.noise_var if settings.learn_noise else noise_arg
    new_g, new_s = _update(settings, state.gammas, sigma2, y, factors, floor, differentiable=True)
    change = runner.relative_change(C.full_gamma(new_g), C.full_gamma(state.gammas))
    return KroState(new_g, new_s, state.iteration + 1, change <= settings.tol)


def _fixed_point(settings: _Settings, solution, y, factors, noise_arg, floor):
    if settings.learn_noise:
        gammas, sigma2 = solution
    else:
        (gammas,), sigma2 = solution, noise_arg
    new_g, new_s = _update(settings, gammas, sigma2, y, factors, floor, differentiable=True)
    return (new_g, new_s) if settings.learn_noise else (new_g,)


def _init_gammas(dims: Sequence[int], dtype) -> tuple:
    """γ_i = N_i^{-1/2} 1 for i < I and γ_I = sqrt(∏_{i<I} N_i) 1, so that ⊗γ_i = 1."""
    out, prod = [], 1.0
    for n in dims[:-1]:
        out.append(jnp.full((n,), n**-0.5, dtype))
        prod *= n
    out.append(jnp.full((dims[-1],), prod**0.5, dtype))
    return tuple(out)


def _prune_setting(prune: Any, method: str, learn_noise: bool, n_factors: int) -> tuple:
    if prune is None:
        prune = DEFAULT_PRUNE[method][1 if learn_noise else 0]
    return C.check_per_factor_prune(prune, n_factors)


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
    adjoint: str = "none",
    x_true: jax.Array | None = None,
    beta: float = 0.8,
    coupled: Sequence[int] = (0, 2),
) -> C.SBLResult | tuple[C.SBLResult, jax.Array]:
    """Kronecker-structured sparse Bayesian learning.

    Args:
      y: (M,) measurements, M = prod(M_i); real or complex.
      factors: I >= 2 matrices H_i of shape (M_i, N_i), y's dtype; y ≈ (H_1 ⊗ ... ⊗ H_I) x.
      method: "svd" (SVD-KroSBL), "am" (AM-KroSBL), "ksbl" (the KSBL baseline) or "pc"
        (pattern-coupled AM-KroSBL for block-sparse x: `jsparse.sbl.pc.pc_krosbl`, which takes
        `beta` and `coupled`, its own pruning and inner-loop defaults, and no `x_true`).
      noise_var: known noise variance σ² (> 0, per real/complex entry), or None to learn it by EM
        starting from 0.1 var(y).
      max_iters: EM iteration budget (static).
      tol: stop when ||γ_t − γ_{t−1}|| / ||γ_{t−1}|| <= tol for the full γ = ⊗γ_i.
      prune: relative pruning threshold(s) r_i in [0, 1): zero γ_i[j] < r_i max γ_i before each
        E-step. None uses the reference code's default for the method and noise setting (see
        DEFAULT_PRUNE); 0 disables pruning.
      prune_abs: absolute threshold (zero γ_i[j] < prune_abs); 0 in the synthetic experiments.
      inner_tol, inner_max: AM inner loop: relative change of ⊗γ_i and a sweep cap (the reference
        uses an absolute 1e-5 and no cap; the cap makes a partial M-step, still a valid EM step). With adjoint="unrolled"/"implicit" the inner loop is a
        scan of `min(inner_max, 50)` sweeps frozen after convergence.
      adjoint: "none", "unrolled" or "implicit" (see jsparse.core.runner).
      x_true: optional (N,) ground truth; when given, also returns the (max_iters,) NMSE of the
        estimate after each iteration (NaN after the stop), for convergence plots. Costs one
        more E-step per iteration.

    Returns:
      SBLResult(x (N,), gammas (I tuple of (N_i,)), noise_var, iterations, converged), or
      (SBLResult, nmse_trace) when x_true is given.
    """
    if method == "pc":  # block-sparse variant with its own defaults (pc.py imports this module's peers)
        from jsparse.sbl.pc import pc_krosbl

        if x_true is not None:
            raise ValueError("x_true: not supported with method='pc'")
        kwargs = {} if prune is None else {"prune": prune}
        return pc_krosbl(y, factors, beta=beta, coupled=coupled, noise_var=noise_var, max_iters=max_iters,
                         tol=tol, adjoint=adjoint, **kwargs)
    V.check_choice(method, "method", METHODS + ("pc",))
    y, factors = C.check_y_factors(y, factors)
    C.check_noise_var(noise_var)
    max_iters = V.check_int(max_iters, "max_iters", minimum=1)
    tol = C.check_tol(tol)
    V.check_positive(prune_abs, "prune_abs", allow_zero=True)
    V.check_positive(inner_tol, "inner_tol", allow_zero=True)
    inner_max = V.check_int(inner_max, "inner_max", minimum=1)
    runner.check_adjoint(adjoint)
    learn = noise_var is None
    rel = _prune_setting(prune, method, learn, len(factors))
    dims = [f.shape[1] for f in factors]
    if x_true is not None:
        x_true = V.check_array(x_true, "x_true", shape=(int(jnp.prod(jnp.array(dims))),))

    rdt = C.real_dtype(y.dtype)
    if adjoint != "none":
        inner_max = min(inner_max, 50)
    settings = _Settings(method, rel, float(prune_abs), learn, tol, float(inner_tol), inner_max)
    noise = jnp.zeros((), rdt) if learn else jnp.asarray(noise_var, rdt)
    result, trace = _solve(y, factors, noise, x_true, settings=settings, max_iters=max_iters, adjoint=adjoint)
    if x_true is not None:
        return result, trace
    return result


@partial(jax.jit, static_argnames=("settings", "max_iters", "adjoint"))
def _solve(y, factors, noise_arg, x_true, *, settings: _Settings, max_iters: int, adjoint: str):
    """The traced part of `krosbl` (compiled once per shapes/dtypes/settings)."""
    learn = settings.learn_noise
    rdt = C.real_dtype(y.dtype)
    dims = [f.shape[1] for f in factors]
    sigma0 = C.initial_noise_var(y) if learn else noise_arg
    floor = C.noise_floor(y)
    state = KroState(_init_gammas(dims, rdt), sigma0, jnp.asarray(0, jnp.int32), jnp.asarray(False))
    args = (y, factors, noise_arg, floor)

    trace_fn = None
    if x_true is not None:

        def trace_fn(st, y_, f_, n_, fl_):
            s2 = st.noise_var if learn else n_
            g = C.prune(st.gammas, settings.rel, settings.abs_)
            return nmse(_posterior(settings, y_, f_, g, s2).mu, x_true)

    step = partial(_step_diff if adjoint == "unrolled" else _step, settings)
    final, info = runner.run(
        step,
        state,
        args,
        max_iters=max_iters,
        adjoint=adjoint,
        fixed_point=partial(_fixed_point, settings),
        solution=("gammas", "noise_var") if learn else ("gammas",),
        trace_fn=trace_fn,
    )
    sigma2 = final.noise_var if learn else noise_arg
    gammas = C.prune(final.gammas, settings.rel, settings.abs_)
    post = _posterior(settings, y, factors, gammas, sigma2)
    return C.SBLResult(post.mu, gammas, sigma2, info.iterations, info.converged), info.trace
