"""Classic EM-SBL (Tipping 2001; Wipf & Rao 2004) on a dense dictionary — the paper's "cSBL".

y = H x + n, x ~ N(0, diag(γ)), n ~ N(0, σ² I). Each iteration: prune γ_n < r max γ (zero, fixed
shape) -> E-step -> γ ← diag Σ + |μ|² -> optional EM noise update. The E-step works on the M side
(Woodbury), with Σ_y = σ² I + H Γ H^H = L L^H (Cholesky) and W = L^{-1} H:

    μ = Γ W^H L^{-1} y,   diag Σ = γ − γ² Σ_m |W_mn|²,   dof = Σ_n γ_n ||W_:n||² = Σ_n (1 − Σ_nn/γ_n).

Cost O(M² N) per iteration, memory O(M N): meant for M <= N (the under-determined case).
With a Kronecker dictionary passed as its factors, `sbl(y, (H_1, ..., H_I))` runs the same
iterates with the structured E-step `_estep.kron_dense_posterior` (Σ_y formed mode by mode, its
inverse by Cholesky): O(M³ + N Σ M_i²) per iteration and no M x N matrix — about 3.5x fewer
flops than the dense path at the paper's default size (M = 1440, N = 3375).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from jsparse.core import runner
from jsparse.core import validation as V
from jsparse.core.metrics import nmse
from jsparse.sbl import _common as C
from jsparse.sbl._estep import kron_dense_posterior

__all__ = ["sbl", "dense_posterior"]


class SBLState(NamedTuple):
    gamma: jax.Array  # (N,) real
    noise_var: jax.Array
    mu: jax.Array  # (N,) posterior mean of the last E-step (for convergence traces)
    iteration: jax.Array
    converged: jax.Array


class _Settings(NamedTuple):
    rel: float
    learn_noise: bool
    tol: float
    kron: bool = False  # H is a tuple of Kronecker factors (structured E-step)


def dense_posterior(y: jax.Array, H: jax.Array, gamma: jax.Array, sigma2):
    """(μ (N,), diag Σ (N,) real, ||y − Hμ||², dof) for the prior diag(γ) (see module docstring)."""
    hg = H * gamma.astype(H.dtype)[None, :]
    cov = jnp.matmul(hg, jnp.conj(H).T, precision=C.HIGHEST)
    # Cholesky guard: σ² at least eps tr(H Γ H^H) >= its largest eigenvalue (matters only when σ² -> 0,
    # e.g. y = 0 with a learned σ², where pruned γ make H Γ H^H singular).
    rdt = C.real_dtype(H.dtype)
    jitter = jnp.finfo(rdt).eps * jnp.sum(jnp.real(jnp.diagonal(cov)))
    sigma2 = jnp.maximum(sigma2, jitter)
    cov = 0.5 * (cov + jnp.conj(cov).T) + sigma2 * jnp.eye(H.shape[0], dtype=H.dtype)
    chol = jnp.linalg.cholesky(cov)
    w = solve_triangular(chol, H, lower=True)
    v = solve_triangular(chol, y, lower=True)
    mu = gamma.astype(H.dtype) * jnp.matmul(jnp.conj(w).T, v, precision=C.HIGHEST)
    col = jnp.sum(jnp.abs(w) ** 2, axis=0)
    diag_sigma = jnp.maximum(gamma - gamma**2 * col, 0)
    # y − Hμ = σ² Σ_y^{-1} y = σ² L^{-H} v
    r = sigma2 * solve_triangular(chol, v, lower=True, trans="C")
    return mu, diag_sigma, jnp.sum(jnp.abs(r) ** 2), jnp.sum(gamma * col)


def _posterior(settings: _Settings, y, H, gamma, sigma2):
    if settings.kron:
        # Same Cholesky guard as dense_posterior (σ² ≥ eps tr(H Γ H^H) = eps Σ_n γ_n ||h_n||²).
        col_sq = C.full_gamma([jnp.sum(jnp.abs(f) ** 2, axis=0) for f in H])
        sigma2 = jnp.maximum(sigma2, jnp.finfo(C.real_dtype(y.dtype)).eps * jnp.sum(gamma * col_sq))
        return kron_dense_posterior(y, H, gamma, sigma2)
    return dense_posterior(y, H, gamma, sigma2)


def _update(settings: _Settings, gamma, sigma2, y, H, floor):
    gamma = jnp.where(gamma < settings.rel * jnp.max(gamma), 0, gamma)
    mu, diag_sigma, resid_sq, dof = _posterior(settings, y, H, gamma, sigma2)
    new = diag_sigma + jnp.abs(mu) ** 2
    if settings.learn_noise:
        sigma2 = jnp.maximum((resid_sq + sigma2 * dof) / y.shape[0], floor)
    return new, sigma2, mu


def _step(settings: _Settings, state: SBLState, y, H, noise_arg, floor) -> SBLState:
    sigma2 = state.noise_var if settings.learn_noise else noise_arg
    new, new_s, mu = _update(settings, state.gamma, sigma2, y, H, floor)
    change = runner.relative_change(new, state.gamma)
    return SBLState(new, new_s, mu, state.iteration + 1, change <= settings.tol)


def _fixed_point(settings: _Settings, solution, y, H, noise_arg, floor):
    if settings.learn_noise:
        gamma, sigma2 = solution
        return _update(settings, gamma, sigma2, y, H, floor)[:2]
    (gamma,) = solution
    return (_update(settings, gamma, noise_arg, y, H, floor)[0],)


def sbl(
    y: jax.Array,
    H: jax.Array,
    *,
    noise_var: float | jax.Array | None = None,
    max_iters: int = 150,
    tol: float = 1e-4,
    prune: float = 1e-3,
    adjoint: str = "none",
    x_true: jax.Array | None = None,
) -> C.SBLResult | tuple[C.SBLResult, jax.Array]:
    """Classic EM sparse Bayesian learning.

    Args:
      y: (M,) measurements, real or complex.
      H: (M, N) dictionary of y's dtype, or a tuple/list of I >= 2 factors (M_i, N_i) of a
        Kronecker dictionary H = H_1 ⊗ ... ⊗ H_I (same iterates, structured E-step, no M x N matrix).
      noise_var: known σ² > 0, or None to learn it by EM from 0.1 var(y).
      max_iters: EM iteration budget (static).
      tol: stop when ||γ_t − γ_{t−1}|| / ||γ_{t−1}|| <= tol.
      prune: relative pruning threshold in [0, 1) (reference: 1e-3); 0 disables pruning.
      adjoint: "none", "unrolled" or "implicit".
      x_true: optional (N,) ground truth; when given, also returns the (max_iters,) NMSE of the
        E-step mean of each iteration (the posterior mean under the previous iteration's γ).

    Returns:
      SBLResult(x (N,), gammas=(γ (N,),), noise_var, iterations, converged); x is the posterior
      mean under the pruned, learned prior.
    """
    kron = isinstance(H, (tuple, list))
    y, H = C.check_y_factors(y, H) if kron else C.check_y_dict(y, H)
    n = int(np.prod([f.shape[1] for f in H])) if kron else H.shape[1]
    C.check_noise_var(noise_var)
    max_iters = V.check_int(max_iters, "max_iters", minimum=1)
    tol = C.check_tol(tol)
    V.check_in_range(prune, "prune", 0.0, 1.0, high_inclusive=False)
    runner.check_adjoint(adjoint)
    learn = noise_var is None
    rdt = C.real_dtype(y.dtype)
    settings = _Settings(float(prune), learn, tol, kron)
    noise = jnp.zeros((), rdt) if learn else jnp.asarray(noise_var, rdt)
    if x_true is not None:
        x_true = V.check_array(x_true, "x_true", shape=(n,))
    result, trace = _solve(y, H, noise, x_true, settings=settings, max_iters=max_iters, adjoint=adjoint)
    return result if x_true is None else (result, trace)


@partial(jax.jit, static_argnames=("settings", "max_iters", "adjoint"))
def _solve(y, H, noise_arg, x_true, *, settings: _Settings, max_iters: int, adjoint: str):
    learn = settings.learn_noise
    rdt = C.real_dtype(y.dtype)
    sigma0 = C.initial_noise_var(y) if learn else noise_arg
    n = int(np.prod([f.shape[1] for f in H])) if settings.kron else H.shape[1]
    mu0 = jnp.zeros((n,), y.dtype)
    state = SBLState(jnp.ones((n,), rdt), sigma0, mu0, jnp.asarray(0, jnp.int32), jnp.asarray(False))
    trace_fn = None if x_true is None else (lambda st, *_: nmse(st.mu, x_true))
    final, info = runner.run(
        partial(_step, settings),
        state,
        (y, H, noise_arg, C.noise_floor(y)),
        max_iters=max_iters,
        adjoint=adjoint,
        fixed_point=partial(_fixed_point, settings),
        solution=("gamma", "noise_var") if learn else ("gamma",),
        trace_fn=trace_fn,
    )
    sigma2 = final.noise_var if learn else noise_arg
    gamma = jnp.where(final.gamma < settings.rel * jnp.max(final.gamma), 0, final.gamma)
    mu = _posterior(settings, y, H, gamma, sigma2)[0]
    return C.SBLResult(mu, (gamma,), sigma2, info.iterations, info.converged), info.trace
