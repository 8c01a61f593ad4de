"""Matrix-free E-steps for Kronecker-structured SBL (never an N x N or M x N matrix).

Model: y = H x + n, H = H_1 ⊗ ... ⊗ H_I (last factor fastest), x ~ N(0, diag(γ)),
γ = γ_1 ⊗ ... ⊗ γ_I, n ~ N(0, σ² I) (CN for complex data). The M-steps need only

    μ = Γ H^H (σ² I + H Γ H^H)^{-1} y,     diag Σ = γ − diag(Γ H^H (σ² I + H Γ H^H)^{-1} H Γ),

plus ||y − H μ||² and dof = Σ_n (1 − Σ_nn/γ_n) = tr(H Σ H^H)/σ² for the noise update.

`posterior_eig_m` (AM/SVD-KroSBL): eigendecompose the small M_i x M_i matrices
H_i Γ_i H_i^H = U_i diag(p_i) U_i^H; then (σ² I + H Γ H^H)^{-1} = U diag(1/(σ² + p)) U^H with
U = ⊗U_i, p = ⊗p_i, and with Φ_i = Γ_i H_i^H U_i:
    μ = (⊗Φ_i)[(⊗U_i)^H y ⊘ (σ² + p)],   diag Σ = γ − (⊗|Φ_i|²)(1 ⊘ (σ² + p)),
    ||y − Hμ||² = σ⁴ Σ_m |z_m|²/(σ² + p_m)²,   dof = Σ_m p_m/(σ² + p_m).
`posterior_eig_n` (KSBL baseline): eigendecompose the N_i x N_i matrices
Γ_i^{1/2} H_i^H H_i Γ_i^{1/2} = Q_i diag(λ_i) Q_i^H; with Ψ_i = Γ_i^{1/2} Q_i and λ = ⊗λ_i:
    Σ = (⊗Ψ_i) diag(σ²/(σ² + λ)) (⊗Ψ_i)^H,  μ = σ^{-2} Σ H^H y,  dof = Σ λ/(σ² + λ).
Both give the same numbers (they are the same posterior); they differ in cost.
Cost per call: O(Σ M_i³ + N Σ M_i) and O(Σ N_i³ + N Σ N_i); memory O(N + M).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jsparse.core.kron import kron_matvec, kron_rmatvec
from jsparse.sbl._common import HIGHEST, full_gamma, safe_eigh, safe_sqrt


class Posterior(NamedTuple):
    """mu: (N,) y's dtype; diag_sigma: (N,) real >= 0; resid_sq, dof: () real."""

    mu: jax.Array
    diag_sigma: jax.Array
    resid_sq: jax.Array
    dof: jax.Array


def _outer_flat(vectors: Sequence[jax.Array]) -> jax.Array:
    return full_gamma(vectors)


def _herm(a: jax.Array) -> jax.Array:
    return 0.5 * (a + jnp.conj(a).T)


def posterior_eig_m(y: jax.Array, factors: Sequence[jax.Array], gammas: Sequence[jax.Array], sigma2) -> Posterior:
    """E-step from the M_i x M_i eigendecompositions (see module docstring). Shapes: y (M,), H_i (M_i, N_i)."""
    us, ps, phis = [], [], []
    for h, g in zip(factors, gammas):
        hg = h * g.astype(h.dtype)[None, :]  # H_i Γ_i
        a = _herm(jnp.matmul(hg, jnp.conj(h).T, precision=HIGHEST))
        p, u = safe_eigh(a)
        us.append(u)
        ps.append(jnp.maximum(p, 0))  # eigh round-off can give tiny negatives
        phis.append(jnp.matmul(jnp.conj(hg).T, u, precision=HIGHEST))  # Γ_i H_i^H U_i
    p = _outer_flat(ps)
    denom = sigma2 + p
    z = kron_rmatvec(us, y)
    w = z / denom.astype(z.dtype)
    mu = kron_matvec(phis, w)
    reduction = kron_matvec([jnp.abs(f) ** 2 for f in phis], 1.0 / denom)
    diag_sigma = jnp.maximum(full_gamma(gammas) - reduction, 0)
    resid_sq = sigma2**2 * jnp.sum(jnp.abs(w) ** 2)
    dof = jnp.sum(p / denom)
    return Posterior(mu, diag_sigma, resid_sq, dof)


def posterior_eig_n(y: jax.Array, factors: Sequence[jax.Array], gammas: Sequence[jax.Array], sigma2) -> Posterior:
    """E-step from the N_i x N_i eigendecompositions (the KSBL baseline's formulation)."""
    psis, lams = [], []
    for h, g in zip(factors, gammas):
        s = safe_sqrt(g)
        gram = jnp.matmul(jnp.conj(h).T, h, precision=HIGHEST)
        b = _herm(gram * jnp.outer(s, s).astype(h.dtype))
        lam, q = safe_eigh(b)
        lams.append(jnp.maximum(lam, 0))
        psis.append(s.astype(h.dtype)[:, None] * q)
    lam = _outer_flat(lams)
    denom = sigma2 + lam
    hty = kron_rmatvec(factors, y)
    coeff = kron_rmatvec(psis, hty) / denom.astype(hty.dtype)
    mu = kron_matvec(psis, coeff)
    diag_sigma = jnp.maximum(sigma2 * kron_matvec([jnp.abs(f) ** 2 for f in psis], 1.0 / denom), 0)
    resid_sq = jnp.sum(jnp.abs(y - kron_matvec(factors, mu)) ** 2)
    dof = jnp.sum(lam / denom)
    return Posterior(mu, diag_sigma, resid_sq, dof)
