"""M-steps of the Kronecker SBL methods on d = diag Σ + |μ|² (real, >= 0, length N).

The unconstrained SBL M-step is γ = d; the Kronecker methods constrain γ = γ_1 ⊗ ... ⊗ γ_I:

* `svd_mstep`: successive rank-one approximation (TT-SVD-like): the leading left singular vector
  of the unfolding D.reshape(N_1, -1) gives γ_1 = |u_1|; the rest s_1 v_1 = D_(1)^T u_1 is unfolded
  again for γ_2, ...; the last factor takes the remaining vector |s v|. The leading singular
  vector comes from the small N_i x N_i Gram matrix T T^T (differentiable via `safe_eigh`).
* `am_sweep`: one Gauss–Seidel sweep of the exact block minimisers
  γ_i[j] = (1 / ∏_{k≠i} l_k) Σ_{n: n_i = j} d_n / ∏_{k≠i} γ_k[n_k], averaging over the l_k active
  (unpruned) entries only and treating d_n/0 as 0 — the same as deleting pruned columns.
* `normalise`: γ_i ← γ_i/||γ_i|| for i < I, γ_I ← γ_I ∏||γ_i||; leaves ⊗γ_i unchanged.
* `am_mstep`: sweeps + normalisation until the relative change of ⊗γ_i is <= inner_tol
  (while_loop, or a frozen-after-convergence scan when it must be reverse-differentiable).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jsparse.sbl._common import HIGHEST, full_gamma, safe_div, safe_eigh, safe_norm


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


def am_sweep(d: jax.Array, gammas: Sequence[jax.Array]) -> tuple:
    """One Gauss–Seidel sweep over the factors (uses each updated factor immediately)."""
    dims = [g.shape[0] for g in gammas]
    ndim = len(dims)
    tensor = d.reshape(dims)
    gammas = list(gammas)
    for i in range(ndim):
        weights = tensor
        count = jnp.ones((), d.dtype)
        for k in range(ndim):
            if k == i:
                continue
            weights = weights * _broadcast(safe_div(jnp.ones_like(gammas[k]), gammas[k]), k, ndim)
            count = count * jnp.sum(gammas[k] > 0).astype(d.dtype)
        axes = tuple(k for k in range(ndim) if k != i)
        gammas[i] = safe_div(jnp.sum(weights, axis=axes), count)
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


def _rel_change(new: Sequence[jax.Array], old: Sequence[jax.Array]) -> jax.Array:
    a, b = full_gamma(new), full_gamma(old)
    return safe_div(safe_norm(a - b), safe_norm(b))


def am_mstep(d: jax.Array, gammas: Sequence[jax.Array], *, inner_tol: float, inner_max: int, differentiable: bool) -> tuple:
    """Alternating minimisation of the Kronecker-constrained M-step cost, from `gammas`."""
    gammas = tuple(gammas)

    def sweep(g):
        return normalise(am_sweep(d, g))

    if not differentiable:

        def cond(carry):
            _, k, done = carry
            return (~done) & (k < inner_max)

        def body(carry):
            g, k, _ = carry
            new = sweep(g)
            return new, k + 1, _rel_change(new, g) <= inner_tol

        out, _, _ = lax.while_loop(cond, body, (gammas, jnp.asarray(0, jnp.int32), jnp.asarray(False)))
        return out

    def scan_body(carry, _):
        g, done = carry
        new = sweep(g)
        stop = _rel_change(new, g) <= inner_tol
        new = jax.tree_util.tree_map(lambda n, o: jnp.where(done, o, n), new, g)
        return (new, done | stop), None

    (out, _), _ = lax.scan(scan_body, (gammas, jnp.asarray(False)), None, length=inner_max)
    return out
