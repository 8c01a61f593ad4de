"""M-steps of the Kronecker SBL methods on d = diag Σ + |μ|² (real, >= 0, length N).

The unconstrained SBL M-step is γ = d; the Kronecker methods constrain γ = γ_1 ⊗ ... ⊗ γ_I:

* `svd_mstep`: successive rank-one approximation (TT-SVD-like): the leading left singular vector
  of the unfolding D.reshape(N_1, -1) gives γ_1 = |u_1|; the rest s_1 v_1 = D_(1)^T u_1 is unfolded
  again for γ_2, ...; the last factor takes the remaining vector |s v|. The leading singular
  vector comes from the small N_i x N_i Gram matrix T T^T (differentiable via `safe_eigh`).
* `am_target` / `am_sweep`: one Gauss–Seidel sweep of the exact block minimisers
  γ_i[j] = t_i[j] = (1 / ∏_{k≠i} l_k) Σ_{n: n_i = j} d_n / ∏_{k≠i} γ_k[n_k], averaging over the l_k
  active (unpruned) entries only and treating d_n/0 as 0 — the same as deleting pruned columns.
  An optional per-factor `update(i, t_i, kept_i)` replaces γ_i = t_i (the pattern-coupled M-step).
* `normalise`: γ_i ← γ_i/||γ_i|| for i < I, γ_I ← γ_I ∏||γ_i||; leaves ⊗γ_i unchanged.
* `am_mstep`: sweeps + normalisation until the relative change of ⊗γ_i is <= inner_tol, through
  the adjoint's inner loop (a while loop, or a frozen-after-convergence scan capped at
  `adjoint.inner_cap` sweeps when it must be reverse-differentiable).
* `coupled_update`: the pattern-coupled factor update of PC-KroSBL, γ̃ = floor + C_β g with
  g = NNLS(C_β, t) on the kept entries.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jsparse.core.adjoint import Adjoint
from jsparse.sbl._common import HIGHEST, full_gamma, safe_div, safe_eigh, safe_norm
from jsparse.sbl.nnls import nnls_gram

FactorUpdate = Callable[[int, jax.Array, jax.Array], jax.Array]


def svd_mstep(d: jax.Array, dims: Sequence[int]) -> tuple:
    """Kronecker rank-one approximation of d (shape (N,)) by successive leading singular vectors."""
    out = []
    rest = d
    for n in dims[:-1]:
        t = rest.reshape(n, -1)
        _, v = safe_eigh(jnp.matmul(t, t.T, precision=HIGHEST))
        u = v[:, -1]
        out.append(jnp.abs(u))
        rest = jnp.matmul(t.T, u, precision=HIGHEST)
    out.append(jnp.abs(rest))
    return tuple(out)


def _broadcast(v: jax.Array, axis: int, ndim: int) -> jax.Array:
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return v.reshape(shape)


def am_target(d: jax.Array, gammas: Sequence[jax.Array], i: int) -> jax.Array:
    """t_i: mean over the active entries of the other factors of d / ∏_{k≠i} γ_k (d/0 := 0)."""
    ndim = len(gammas)
    weights = d.reshape([g.shape[0] for g in gammas])
    count = jnp.ones((), d.dtype)
    for k, g in enumerate(gammas):
        if k == i:
            continue
        weights = weights * _broadcast(safe_div(jnp.ones_like(g), g), k, ndim)
        count = count * jnp.sum(g > 0).astype(d.dtype)
    return safe_div(jnp.sum(weights, axis=tuple(k for k in range(ndim) if k != i)), count)


def am_sweep(d: jax.Array, gammas: Sequence[jax.Array], update: FactorUpdate | None = None) -> tuple:
    """One Gauss–Seidel sweep over the factors (uses each updated factor immediately).

    update: optional `(i, t_i, kept_i) -> γ_i` with kept_i = γ_i > 0 at the start of the sweep;
    None takes the AM target itself.
    """
    kept = [g > 0 for g in gammas]
    gammas = list(gammas)
    for i in range(len(gammas)):
        t = am_target(d, gammas, i)
        gammas[i] = t if update is None else update(i, t, kept[i])
    return tuple(gammas)


def normalise(gammas: Sequence[jax.Array]) -> tuple:
    """Unit norm for all factors but the last, which absorbs the scale (⊗γ_i unchanged)."""
    out, scale = [], jnp.ones((), gammas[0].dtype)
    for g in gammas[:-1]:
        nrm = safe_norm(g)
        out.append(safe_div(g, nrm))
        scale = scale * nrm
    out.append(gammas[-1] * scale)
    return tuple(out)


def gamma_change(new: Sequence[jax.Array], old: Sequence[jax.Array]) -> jax.Array:
    """||⊗new − ⊗old|| / ||⊗old|| (0 when both vanish)."""
    a, b = full_gamma(new), full_gamma(old)
    return safe_div(safe_norm(a - b), safe_norm(b))


def am_mstep(d: jax.Array, gammas: Sequence[jax.Array], adjoint: Adjoint, *, inner_tol: float, inner_max: int,
             update: FactorUpdate | None = None) -> tuple:
    """Normalised AM sweeps from `gammas` until the relative change of ⊗γ_i is <= inner_tol."""
    return adjoint.inner_loop(
        lambda g: normalise(am_sweep(d, g, update)),
        tuple(gammas),
        lambda new, old: gamma_change(new, old) <= inner_tol,
        inner_max,
    )


def coupled_update(t: jax.Array, mask: jax.Array, cmat: jax.Array, floor: float) -> jax.Array:
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
