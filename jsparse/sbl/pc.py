"""Pattern-coupled SBL for block-sparse signals: PC-KroSBL (He & Joseph, TSP 2024) and PC-SBL.

**PC-KroSBL** (`pc_krosbl`): AM-KroSBL whose prior variances on the *coupled* factors are
γ̃_i = C_β g_i, g_i >= 0, with the tridiagonal coupling matrix C_β = I + β(super + sub diagonal
ones) (no wrap-around); the prior is x ~ CN(0, diag(γ̃_1 ⊗ ... ⊗ γ̃_I)). One EM iteration:

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

The estimate is the posterior mean under the final, pruned prior.

**PC-SBL** (`pc_sbl`; Fang et al., TSP 2015, as modified in the reference code): 1-D neighbour
coupling on the vectorised x, ignoring the Kronecker structure. Gamma hyperprior (a, b) on
precisions α; E_n = |μ_n|² + Σ_nn + η(|μ_{n±1}|² + Σ_{n±1,n±1}); α_n = (a + ½)/(½E_n + b);
α_n > prune · min α is set to 1e10; the prior precision is α_n + η(α_{n−1} + α_{n+1}) (zero
padded). Stop when the relative change of μ is <= tol. With a list of Kronecker factors as the
dictionary the E-step never forms the M x N matrix (`kron_dense_posterior`, O(M³ + N Σ M_i²)).
"""
from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jsparse.core import runner
from jsparse.core import validation as V
from jsparse.sbl import _common as C
from jsparse.sbl._estep import kron_dense_posterior, posterior_eig_m
from jsparse.sbl._mstep import normalise
from jsparse.sbl.classic import dense_posterior, sbl
from jsparse.sbl.nnls import nnls_gram

__all__ = ["pc_krosbl", "pc_sbl", "csbl_kron", "coupling_matrix", "kron_dense_posterior", "PC_PRUNE", "PCState"]

PC_PRUNE = (1e-2, 1e-1, 1e-2)  # reference relative thresholds for (IRS cascaded, MS, BS)
HIGHEST = C.HIGHEST


def coupling_matrix(n: int, beta, dtype=jnp.float32) -> jax.Array:
    """(n, n) C_β = I + β (ones on the first super- and sub-diagonal); no wrap-around."""
    off = jnp.eye(n, k=1, dtype=dtype) + jnp.eye(n, k=-1, dtype=dtype)
    return jnp.eye(n, dtype=dtype) + jnp.asarray(beta, dtype) * off


# ----------------------------------------------------------------------------- PC-KroSBL
class PCState(NamedTuple):
    gammas: tuple  # I arrays (N_i,): effective variances γ̃_i (C_β g_i + floor on coupled factors), real
    noise_var: jax.Array
    iteration: jax.Array
    converged: jax.Array


class _Settings(NamedTuple):
    coupled: tuple  # bool per factor
    rel: tuple
    abs_: float
    floor: float
    learn_noise: bool
    tol: float
    inner_tol: float
    inner_max: int


def _bcast(v: jax.Array, axis: int, ndim: int) -> jax.Array:
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return v.reshape(shape)


def _am_target(d: jax.Array, gammas: Sequence[jax.Array], i: int) -> jax.Array:
    """t_i: mean over the active entries of the other factors of d / ∏_{k≠i} γ̃_k (d/0 := 0)."""
    ndim = len(gammas)
    t = d.reshape([g.shape[0] for g in gammas])
    count = jnp.ones((), d.dtype)
    for k, g in enumerate(gammas):
        if k == i:
            continue
        t = t * _bcast(C.safe_div(jnp.ones_like(g), g), k, ndim)
        count = count * jnp.sum(g > 0).astype(d.dtype)
    return C.safe_div(jnp.sum(t, axis=tuple(k for k in range(ndim) if k != i)), count)


def _coupled_update(t: jax.Array, mask: jax.Array, cmat: jax.Array, floor: float) -> jax.Array:
    """γ̃ = floor + C g on the kept entries (0 elsewhere), g = NNLS(C restricted to kept, t)."""
    keep2 = mask[:, None] & mask[None, :]
    cm = jnp.where(keep2, cmat, 0) + jnp.diag((~mask).astype(cmat.dtype))
    tm = jnp.where(mask, t, 0)
    gram = jnp.matmul(cm.T, cm, precision=HIGHEST)
    atb = jnp.matmul(cm.T, tm, precision=HIGHEST)
    n = t.shape[0]
    tol = 10 * n * jnp.finfo(t.dtype).eps * jnp.linalg.norm(cm) * jnp.linalg.norm(tm)
    g = nnls_gram(gram, atb, tol=tol, max_iters=3 * n).x
    return jnp.where(mask, floor + jnp.matmul(cm, g, precision=HIGHEST), 0)


def _sweep(settings: _Settings, d, gammas, cmats):
    masks = [g > 0 for g in gammas]
    gammas = list(gammas)
    for i in range(len(gammas)):
        t = _am_target(d, gammas, i)
        if settings.coupled[i]:
            gammas[i] = _coupled_update(t, masks[i], cmats[i], settings.floor)
        else:
            gammas[i] = jnp.where(masks[i], t, 0)
    return normalise(gammas)


def _rel_change(new, old):
    a, b = C.full_gamma(new), C.full_gamma(old)
    return C.safe_div(C.safe_norm(a - b), C.safe_norm(b))


def _mstep(settings: _Settings, d, gammas, cmats, differentiable: bool):
    gammas = tuple(gammas)
    if not differentiable:

        def cond(carry):
            return (~carry[2]) & (carry[1] < settings.inner_max)

        def body(carry):
            g, k, _ = carry
            new = _sweep(settings, d, g, cmats)
            return new, k + 1, _rel_change(new, g) <= settings.inner_tol

        out, _, _ = lax.while_loop(cond, body, (gammas, jnp.asarray(0, jnp.int32), jnp.asarray(False)))
        return out

    def scan_body(carry, _):
        g, done = carry
        new = _sweep(settings, d, g, cmats)
        stop = _rel_change(new, g) <= settings.inner_tol
        new = jax.tree_util.tree_map(lambda n_, o: jnp.where(done, o, n_), new, g)
        return (new, done | stop), None

    (out, _), _ = lax.scan(scan_body, (gammas, jnp.asarray(False)), None, length=settings.inner_max)
    return out


def _update(settings: _Settings, gammas, sigma2, y, factors, cmats, floor, differentiable: bool):
    gammas = C.prune(gammas, settings.rel, settings.abs_)
    post = posterior_eig_m(y, factors, gammas, sigma2)
    d = post.diag_sigma + jnp.abs(post.mu) ** 2
    new = _mstep(settings, d, gammas, cmats, differentiable)
    new_sigma2 = sigma2
    if settings.learn_noise:  # Wipf–Rao EM update, as in AM-KroSBL
        new_sigma2 = jnp.maximum((post.resid_sq + sigma2 * post.dof) / y.shape[0], floor)
    return tuple(new), new_sigma2


def _step(settings, differentiable, state: PCState, y, factors, cmats, noise_arg, floor) -> PCState:
    sigma2 = state.noise_var if settings.learn_noise else noise_arg
    new_g, new_s = _update(settings, state.gammas, sigma2, y, factors, cmats, floor, differentiable)
    change = runner.relative_change(C.full_gamma(new_g), C.full_gamma(state.gammas))
    return PCState(new_g, new_s, state.iteration + 1, change <= settings.tol)


def _fixed_point(settings, solution, y, factors, cmats, noise_arg, floor):
    if settings.learn_noise:
        gammas, sigma2 = solution
    else:
        (gammas,), sigma2 = solution, noise_arg
    new_g, new_s = _update(settings, gammas, sigma2, y, factors, cmats, floor, True)
    return (new_g, new_s) if settings.learn_noise else (new_g,)


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
    return tuple(i in out for i in range(n_factors))


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
    adjoint: str = "none",
) -> C.SBLResult:
    """Pattern-coupled AM-KroSBL for Kronecker-structured, block-sparse x (see module docstring).

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
      adjoint: "none", "unrolled" or "implicit" (jsparse.core.runner); NNLS differentiates with its
        active set held fixed.

    Returns:
      SBLResult(x (N,), gammas (I tuple of γ̃_i, pruned), noise_var, iterations, converged).
    """
    y, factors = C.check_y_factors(y, factors)
    n_f = len(factors)
    V.check_in_range(beta, "beta", 0.0, 1.0, high_inclusive=False)
    flags = _check_coupled(coupled, n_f)
    C.check_noise_var(noise_var)
    max_iters = V.check_int(max_iters, "max_iters", minimum=1)
    tol = C.check_tol(tol)
    rel = C.check_per_factor_prune((PC_PRUNE if n_f == 3 else 1e-2) if prune is None else prune, n_f)
    V.check_positive(prune_abs, "prune_abs", allow_zero=True)
    V.check_positive(inner_tol, "inner_tol", allow_zero=True)
    inner_max = V.check_int(inner_max, "inner_max", minimum=1)
    V.check_positive(floor, "floor", allow_zero=True)
    runner.check_adjoint(adjoint)

    learn = noise_var is None
    rdt = C.real_dtype(y.dtype)
    settings = _Settings(flags, rel, float(prune_abs), float(floor), learn, tol, float(inner_tol), inner_max)
    noise = jnp.zeros((), rdt) if learn else jnp.asarray(noise_var, rdt)
    return _pc_krosbl_jit(y, factors, noise, jnp.asarray(beta, rdt), settings=settings, max_iters=max_iters, adjoint=adjoint)


@partial(jax.jit, static_argnames=("settings", "max_iters", "adjoint"))
def _pc_krosbl_jit(y, factors, noise_arg, beta, *, settings: _Settings, max_iters: int, adjoint: str):
    """The traced part of `pc_krosbl` (compiled once per shapes/dtypes/settings; β is traced)."""
    learn = settings.learn_noise
    rdt = C.real_dtype(y.dtype)
    dims = [f.shape[1] for f in factors]
    cmats = tuple(coupling_matrix(n, beta, rdt) if c else jnp.eye(n, dtype=rdt) for n, c in zip(dims, settings.coupled))
    # Reference initialisation: g_i = 1, so γ̃_i = C_β 1 on coupled factors and 1 elsewhere.
    gammas0 = tuple(jnp.sum(cm, axis=1) for cm in cmats)
    sigma0 = C.initial_noise_var(y) if learn else noise_arg
    state = PCState(gammas0, sigma0, jnp.asarray(0, jnp.int32), jnp.asarray(False))
    args = (y, factors, cmats, noise_arg, C.noise_floor(y))
    final, info = runner.run(
        partial(_step, settings, adjoint == "unrolled"),
        state,
        args,
        max_iters=max_iters,
        adjoint=adjoint,
        fixed_point=partial(_fixed_point, settings),
        solution=("gammas", "noise_var") if learn else ("gammas",),
    )
    sigma2 = final.noise_var if learn else noise_arg
    gammas = C.prune(final.gammas, settings.rel, settings.abs_)
    post = posterior_eig_m(y, factors, gammas, sigma2)
    return C.SBLResult(post.mu, gammas, sigma2, info.iterations, info.converged)


# ----------------------------------------------------------------------------- PC-SBL
class PCSBLState(NamedTuple):
    mu: jax.Array  # (N,) posterior mean
    var: jax.Array  # (N,) real posterior variances diag Σ
    noise_var: jax.Array
    iteration: jax.Array
    converged: jax.Array


class _PCSBLSettings(NamedTuple):
    eta: float
    a: float
    b: float
    prune: float
    learn_noise: bool
    tol: float
    kron: bool


def _shift_sum(v: jax.Array, eta: float) -> jax.Array:
    """v_n + η (v_{n+1} + v_{n−1}), zero padded at both ends."""
    z = jnp.zeros((1,), v.dtype)
    return v + eta * (jnp.concatenate([v[1:], z]) + jnp.concatenate([z, v[:-1]]))


def _pcsbl_posterior(settings, y, dictionary, v, sigma2):
    if settings.kron:
        return kron_dense_posterior(y, dictionary, v, sigma2)
    return dense_posterior(y, dictionary, v, sigma2)


def _pcsbl_step(settings: _PCSBLSettings, state: PCSBLState, y, dictionary, noise_arg, floor) -> PCSBLState:
    sigma2 = state.noise_var if settings.learn_noise else noise_arg
    e = _shift_sum(jnp.abs(state.mu) ** 2, settings.eta) + _shift_sum(state.var, settings.eta)
    alpha = (settings.a + 0.5) / (0.5 * e + settings.b)
    alpha = jnp.where(alpha > settings.prune * jnp.min(alpha), 1e10, alpha)
    v = 1.0 / _shift_sum(alpha, settings.eta)
    mu, var, resid_sq, dof = _pcsbl_posterior(settings, y, dictionary, v, sigma2)
    new_sigma2 = sigma2
    if settings.learn_noise:
        new_sigma2 = jnp.maximum((resid_sq + sigma2 * dof) / y.shape[0], floor)
    change = runner.relative_change(mu, state.mu)
    return PCSBLState(mu, var, new_sigma2, state.iteration + 1, change <= settings.tol)


def pc_sbl(
    y: jax.Array,
    H: jax.Array | Sequence[jax.Array],
    *,
    beta: float = 0.9,
    noise_var: float | jax.Array | None = None,
    a: float = 0.5,
    b: float = 1e-4,
    prune: float = 1e3,
    max_iters: int = 150,
    tol: float = 1e-4,
) -> C.SBLResult:
    """Pattern-coupled SBL (PC-SBL) on the vectorised problem (see module docstring).

    Args:
      y: (M,) measurements, real or complex.
      H: a dense (M, N) dictionary, or a list/tuple of Kronecker factors (M_i, N_i) (same model,
        structured E-step; x ordered with the last factor fastest).
      beta: neighbour coupling η in [0, 1) (reference 0.9).
      noise_var: known σ² > 0, or None to learn it by EM from 0.1 var(y).
      a, b: Gamma hyperprior parameters (reference 0.5, 1e-4).
      prune: precisions above prune · min α are set to 1e10 (reference 1e3).
      max_iters, tol: stop when ||μ_t − μ_{t−1}|| / ||μ_{t−1}|| <= tol or after max_iters.

    Returns:
      SBLResult(x = μ (N,), gammas = (1/α,) (N,) prior variances before coupling, noise_var,
      iterations, converged). Not differentiable through the loop (adjoint "none" only).
    """
    kron = isinstance(H, (list, tuple))
    y, dictionary = C.check_y_factors(y, H) if kron else C.check_y_dict(y, H)
    V.check_in_range(beta, "beta", 0.0, 1.0, high_inclusive=False)
    C.check_noise_var(noise_var)
    V.check_positive(a, "a", allow_zero=True)
    V.check_positive(b, "b")
    V.check_positive(prune, "prune")
    max_iters = V.check_int(max_iters, "max_iters", minimum=1)
    tol = C.check_tol(tol)
    learn = noise_var is None
    rdt = C.real_dtype(y.dtype)
    settings = _PCSBLSettings(float(beta), float(a), float(b), float(prune), learn, tol, kron)
    noise = jnp.zeros((), rdt) if learn else jnp.asarray(noise_var, rdt)
    return _pc_sbl_jit(y, dictionary, noise, settings=settings, max_iters=max_iters)


@partial(jax.jit, static_argnames=("settings", "max_iters"))
def _pc_sbl_jit(y, dictionary, noise_arg, *, settings: _PCSBLSettings, max_iters: int):
    """The traced part of `pc_sbl`."""
    learn = settings.learn_noise
    rdt = C.real_dtype(y.dtype)
    n = 1
    for f in dictionary if settings.kron else [dictionary]:
        n *= f.shape[1]
    sigma0 = C.initial_noise_var(y) if learn else noise_arg
    # Reference initialisation: unit prior precision (no coupling) for the first posterior.
    mu0, var0, _, _ = _pcsbl_posterior(settings, y, dictionary, jnp.ones((n,), rdt), sigma0)
    state = PCSBLState(mu0, var0, sigma0, jnp.asarray(0, jnp.int32), jnp.asarray(False))
    final, info = runner.run(
        partial(_pcsbl_step, settings), state, (y, dictionary, noise_arg, C.noise_floor(y)), max_iters=max_iters
    )
    e = _shift_sum(jnp.abs(final.mu) ** 2, settings.eta) + _shift_sum(final.var, settings.eta)
    gamma = (0.5 * e + settings.b) / (settings.a + 0.5)
    sigma2 = final.noise_var if learn else noise_arg
    return C.SBLResult(final.mu, (gamma.astype(rdt),), sigma2, info.iterations, info.converged)


# ----------------------------------------------------------------------------- cSBL, Kronecker dictionary
def csbl_kron(
    y: jax.Array,
    factors: Sequence[jax.Array],
    *,
    noise_var: float | jax.Array,
    prune: float = 1e-4,
    max_iters: int = 150,
    tol: float = 1e-4,
) -> C.SBLResult:
    """Classic EM-SBL ("cSBL") for a Kronecker dictionary with a non-Kronecker prior diag(γ).

    The same iterates as `jsparse.sbl.sbl(y, kron_dense(factors), noise_var=..., prune=...)` (prune
    γ_n < prune · max γ, E-step, γ ← diag Σ + |μ|², stop on the relative change of γ), but the
    E-step is `kron_dense_posterior`: O(M³ + N Σ M_i²) per iteration instead of O(M² N), and no
    M x N matrix. Known noise variance only (the IRS experiment). Reference prune: 1e-4.
    """
    V.check_positive(noise_var, "noise_var")  # known noise only (sbl() would learn it from None)
    return sbl(y, tuple(factors), noise_var=noise_var, prune=prune, max_iters=max_iters, tol=tol)
