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
import jax.scipy.linalg

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


# ----------------------------------------------------------------------------- dense posterior, Kronecker H
# For a prior diag(v) that is not itself a Kronecker product (cSBL, PC-SBL on a Kronecker
# dictionary): Σ_y is formed mode by mode and inverted by Cholesky, never an M x N matrix.
def _letters(n: int, offset: int) -> str:
    return "".join(chr(ord("a") + offset + i) for i in range(n))


def _kron_cov(factors: Sequence[jax.Array], v: jax.Array) -> jax.Array:
    """(M, M) H diag(v) H^H for H = ⊗H_i, contracting one mode at a time (never M x N)."""
    k = len(factors)
    n_ax, m_ax, p_ax = _letters(k, 0), _letters(k, k), _letters(k, 2 * k)
    t = v.astype(factors[0].dtype).reshape([f.shape[1] for f in factors])
    cur = list(n_ax)
    for i, h in enumerate(factors):
        pair = jnp.einsum("mn,pn->nmp", h, jnp.conj(h))  # P_i[n, m, m'] = H_i[m, n] conj(H_i[m', n])
        out = [c for c in cur if c != n_ax[i]] + [m_ax[i], p_ax[i]]
        t = jnp.einsum(f"{''.join(cur)},{n_ax[i]}{m_ax[i]}{p_ax[i]}->{''.join(out)}", t, pair, precision=HIGHEST)
        cur = out
    t = jnp.einsum(f"{''.join(cur)}->{m_ax}{p_ax}", t)
    m = 1
    for f in factors:
        m *= f.shape[0]
    return t.reshape(m, m)


def _kron_quad_diag(factors: Sequence[jax.Array], s: jax.Array) -> jax.Array:
    """(N,) real diag(H^H S H) for H = ⊗H_i and a Hermitian (M, M) S, one mode at a time."""
    k = len(factors)
    n_ax, m_ax, p_ax = _letters(k, 0), _letters(k, k), _letters(k, 2 * k)
    t = s.reshape([f.shape[0] for f in factors] * 2)
    cur = list(m_ax + p_ax)
    for i, h in enumerate(factors):
        pair = jnp.einsum("mn,pn->mpn", jnp.conj(h), h)  # Q_i[m, m', n] = conj(H_i[m, n]) H_i[m', n]
        out = [c for c in cur if c not in (m_ax[i], p_ax[i])] + [n_ax[i]]
        t = jnp.einsum(f"{''.join(cur)},{m_ax[i]}{p_ax[i]}{n_ax[i]}->{''.join(out)}", t, pair, precision=HIGHEST)
        cur = out
    t = jnp.einsum(f"{''.join(cur)}->{n_ax}", t)
    return jnp.real(t).reshape(-1)


def kron_dense_posterior(y: jax.Array, factors: Sequence[jax.Array], v: jax.Array, sigma2):
    """Posterior for a Kronecker dictionary and an arbitrary (non-Kronecker) prior diag(v).

    Returns (μ (N,), diag Σ (N,) real, ||y − Hμ||², dof = Σ_n v_n [HᴴΣ_y⁻¹H]_nn) with
    Σ_y = σ² I + H diag(v) Hᴴ, μ = v ∘ Hᴴ Σ_y⁻¹ y, diag Σ = v − v² ∘ diag(Hᴴ Σ_y⁻¹ H) —
    the same numbers as `classic.dense_posterior(y, kron_dense(factors), v, σ²)` at O(M³ + N Σ M_i²).
    """
    m = y.shape[0]
    cov = _kron_cov(factors, v)
    cov = 0.5 * (cov + jnp.conj(cov).T) + jnp.asarray(sigma2).astype(cov.dtype) * jnp.eye(m, dtype=cov.dtype)
    chol = jnp.linalg.cholesky(cov)
    inv = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(m, dtype=cov.dtype))
    inv = 0.5 * (inv + jnp.conj(inv).T)
    sy = jnp.matmul(inv, y, precision=HIGHEST)
    mu = v.astype(y.dtype) * kron_rmatvec(factors, sy)
    quad = _kron_quad_diag(factors, inv)
    diag_sigma = jnp.maximum(v - v**2 * quad, 0)
    resid_sq = sigma2**2 * jnp.sum(jnp.abs(sy) ** 2)
    return mu, diag_sigma, resid_sq, jnp.sum(v * quad)
