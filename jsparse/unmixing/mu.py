"""Multiplicative-update engine shared by NMF, L1/2-NMF, l2,1-NMF and RRLbS.

One objective covers the whole family (notation of docs/unmixing.md; Y is L x N)::

    O(M, A, h) = data(Y - M A)                                   loss="fro":  1/2 ||E||_F^2
                                                                 loss="l21":  tau sum_l sqrt(||e^l||^2 + eps^2)
               + delta^2/2 ||1_R^T A - 1_N^T||^2                 soft sum-to-one (ASC)
               + lam sum_n h_n sum_k A_kn^p                      guidance "learned" / "uniform"
               + gamma ||h||^2,  h in {h >= 0, sum h = s}        guidance "learned" only

`e^l` is row l (one channel) of E, so the l2,1 norm groups *channels*: a corrupted band costs
linearly, not quadratically. `tau` (harmonic mean of the initial channel residual norms) puts the
l2,1 term on the scale of 1/2 ||E||^2, so lam, delta mean the same for both losses.

One iteration (each block step does not increase O; see docs/unmixing.md):
  1. M <- M * (Y A^T) / (M A A^T)                      (the channel weights cancel row-wise)
  2. w_l = tau / sqrt(||e^l||^2 + eps^2) at (M_new, A)  (IRLS majoriser; w = 1 for "fro")
  3. A <- A * (M^T W Y + delta^2) / (M^T W M A + delta^2 1 1^T A + lam p h * max(A, eps_a)^(p-1))
  4. h <- Proj_simplex_s(-lam c / (2 gamma)),  c_n = sum_k A_kn^p   (exact block minimiser)

guidance="exponent" is the alternative per-pixel-exponent model (variant R2): the sparsity term is
lam sum_n sum_k A_kn^(q_n) with q_n = 1 - (1 - p) h_n and h_n the purity of pixel n re-estimated
from A after every step. That h step is a heuristic, so O is not guaranteed to decrease for R2.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jsparse.unmixing._common import mm, project_simplex, sparsity_lambda

__all__ = ["MUConfig", "MUParams", "MUState", "mu_params", "mu_init", "mu_step", "mu_objective", "LOSSES",
           "GUIDANCES"]

LOSSES = ("fro", "l21")
GUIDANCES = ("none", "uniform", "learned", "exponent")


class MUConfig(NamedTuple):
    """Static (compile-time) settings."""

    loss: str = "l21"
    guidance: str = "learned"
    p: float = 0.5


class MUParams(NamedTuple):
    """Numeric settings resolved at the start (scalars of Y's dtype; traced, so new values do not recompile)."""

    lam: jax.Array  # sparsity weight
    gamma: jax.Array  # map regulariser
    delta2: jax.Array  # ASC weight delta^2
    budget: jax.Array  # s, the sum of the guidance map
    tau: jax.Array  # l2,1 scale (1 for "fro"), from the starting residual
    eps: jax.Array  # smoothing of the channel norms, from Y


class MUState(NamedTuple):
    """Iterate of the engine. M (L, R), A (R, N), h (N,); objective a scalar; params as resolved at the start."""

    M: jax.Array
    A: jax.Array
    h: jax.Array
    objective: jax.Array  # O at (M, A, h)
    params: MUParams
    iteration: jax.Array  # int32
    converged: jax.Array  # bool


def _floor(dtype):
    # Floor for A inside A^(p-1): keeps the power finite; entries below it are numerically zero.
    return jnp.asarray(1e-9 if jnp.dtype(dtype) == jnp.float64 else 1e-6, dtype)


_DIV = 1e-30  # added to MU denominators against 0/0 (far below any real denominator)


def _channel_norms(E, eps):
    return jnp.sqrt(jnp.sum(E * E, axis=1) + eps * eps)


def mu_params(cfg: MUConfig, Y: jax.Array, M0: jax.Array, A0: jax.Array, lam: Any = None, gamma: Any = None,
              delta: Any = 15.0, budget: Any = 1.0) -> MUParams:
    """Resolve the numeric settings for data Y (L, N) and the start (M0, A0).

    lam None: the L1/2-NMF heuristic `sparsity_lambda(Y)`; gamma None: lam / 8; budget is the mean of
    the guidance map (its sum is budget * N); eps = 1e-6 sqrt(||Y||_F^2 / L); tau (loss "l21") is the
    harmonic mean of the starting channel residual norms.
    """
    dtype = Y.dtype
    L, N = Y.shape
    lam = (sparsity_lambda(Y) if lam is None else jnp.asarray(lam)).astype(dtype)
    gamma = (lam / 8.0 if gamma is None else jnp.asarray(gamma)).astype(dtype)
    eps = (1e-6 * jnp.sqrt(jnp.sum(Y * Y) / L)).astype(dtype)
    if cfg.loss == "l21":
        norms0 = _channel_norms(Y - mm(M0, A0), eps)
        tau = 1.0 / jnp.mean(1.0 / norms0)  # harmonic mean of the initial channel residual norms
    else:
        tau = jnp.ones((), dtype)
    return MUParams(lam, gamma, jnp.asarray(delta, dtype) ** 2, jnp.asarray(budget * N, dtype), tau.astype(dtype),
                    eps)


def _purity(A):
    R = A.shape[0]
    return jnp.clip((jnp.max(A, axis=0) - 1.0 / R) / (1.0 - 1.0 / R), 0.0, 1.0)


def _exponent(cfg, h):
    return 1.0 - (1.0 - cfg.p) * h  # (N,): p for pure pixels, 1 (no sparsity under the ASC) for mixed


def _sparsity_value(cfg, A, h):
    if cfg.guidance in ("learned", "uniform"):
        return jnp.sum(h * jnp.sum(A**cfg.p, axis=0))
    if cfg.guidance == "exponent":
        return jnp.sum(A ** _exponent(cfg, h)[None, :])
    return jnp.zeros((), A.dtype)


def mu_objective(cfg: MUConfig, M, A, h, Y: jax.Array, params: MUParams) -> jax.Array:
    """O(M, A, h) as in the module docstring (scalar of Y's dtype)."""
    E = Y - mm(M, A)
    if cfg.loss == "l21":
        data = params.tau * jnp.sum(_channel_norms(E, params.eps))
    else:
        data = 0.5 * jnp.sum(E * E)
    asc = 0.5 * params.delta2 * jnp.sum((jnp.sum(A, axis=0) - 1.0) ** 2)
    out = data + asc + params.lam * _sparsity_value(cfg, A, h)
    if cfg.guidance == "learned":
        out = out + params.gamma * jnp.sum(h * h)
    return out


def _update_h(cfg: MUConfig, A, h, params: MUParams):
    if cfg.guidance == "learned":
        c = jnp.sum(A**cfg.p, axis=0)
        gamma = jnp.maximum(params.gamma, jnp.finfo(A.dtype).tiny)
        return project_simplex(-params.lam * c / (2.0 * gamma), params.budget, axis=0)
    if cfg.guidance == "exponent":
        return _purity(A)
    return h


def mu_init(cfg: MUConfig, Y: jax.Array, M0: jax.Array, A0: jax.Array, params: MUParams) -> MUState:
    """State at (M0, A0) with the map h that fits A0 (budget / N for "uniform", zeros for "none")."""
    N = A0.shape[1]
    if cfg.guidance == "uniform":
        h = jnp.full((N,), 1.0, A0.dtype) * (params.budget / N)
    elif cfg.guidance == "none":
        h = jnp.zeros((N,), A0.dtype)
    else:
        h = _update_h(cfg, A0, jnp.zeros((N,), A0.dtype), params)
    obj = mu_objective(cfg, M0, A0, h, Y, params)
    return MUState(M0, A0, h, obj, params, jnp.zeros((), jnp.int32), jnp.zeros((), bool))


def _sparsity_grad(cfg, A, h, params):
    Af = jnp.maximum(A, _floor(A.dtype))
    if cfg.guidance in ("learned", "uniform"):
        return params.lam * cfg.p * h[None, :] * Af ** (cfg.p - 1.0)
    if cfg.guidance == "exponent":
        q = _exponent(cfg, h)[None, :]
        return params.lam * q * Af ** (q - 1.0)
    return jnp.zeros_like(A)


def mu_step(state: MUState, cfg: MUConfig, Y: jax.Array, tol: float) -> MUState:
    """One sweep M -> (weights) -> A -> h; see the module docstring. Stops on |dO| / |O| < tol."""
    M, A, h, params = state.M, state.A, state.h, state.params
    # 1. Endmembers: plain NMF update (row weights cancel elementwise).
    # max(numerator, 0): the identity for Y >= 0; for an image with negative entries (unclipped noisy
    # bands, solver objects only) it is the minimiser of the same Lee-Seung auxiliary function over
    # M >= 0, so M, A stay non-negative and O still does not increase.
    M = M * jnp.maximum(mm(Y, A.T), 0.0) / (mm(M, mm(A, A.T)) + _DIV)
    # 2. IRLS channel weights at (M_new, A).
    if cfg.loss == "l21":
        w = params.tau / _channel_norms(Y - mm(M, A), params.eps)
    else:
        w = jnp.ones((Y.shape[0],), Y.dtype)
    # 3. Abundances with the soft ASC (the delta-augmented row) and the weighted l_p term.
    WM = w[:, None] * M
    num = jnp.maximum(mm(WM.T, Y) + params.delta2, 0.0)
    den = mm(mm(M.T, WM), A) + params.delta2 * jnp.sum(A, axis=0, keepdims=True)
    den = den + _sparsity_grad(cfg, A, h, params)
    A = A * num / (den + _DIV)
    # 4. Guidance map.
    h = _update_h(cfg, A, h, params)
    obj = mu_objective(cfg, M, A, h, Y, params)
    change = jnp.abs(state.objective - obj) / jnp.maximum(jnp.abs(state.objective), jnp.finfo(obj.dtype).tiny)
    return MUState(M, A, h, obj, params, state.iteration + 1, change < tol)
