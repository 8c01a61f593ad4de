"""A plain, matrix-free NumPy port of SVD-KroSBL and AM-KroSBL (learned noise variance), float64.

What a Python user who read the paper would write: per EM iteration, eigendecompose the small
M_i x M_i matrices H_i Γ_i H_iᵀ = U_i diag(p_i) U_iᵀ, apply the posterior with mode products
(never an N x N or M x N matrix), then the SVD M-step (successive leading singular vectors of the
unfoldings of d = diag Σ + μ²) or the AM M-step (Gauss–Seidel sweeps to convergence, then
normalisation), then the EM noise update. The iteration, stopping rule, pruning and defaults are
those of `jsparse.sbl.krosbl(method="svd"|"am", noise_var=None)`, so the two agree to round-off
(see tests/sbl/test_numpy_port.py and experiments/bench_sbl.py).

`krosbl_np(y, factors, method)` returns (x (N,), γ_i tuple, σ², iterations, converged, counts),
counts = {"iterations": EM iterations run, "inner_sweeps": AM sweeps run in all (0 for SVD)},
the numbers `bench_sbl.flops_per_trial` needs to count the arithmetic of one trial.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# Relative pruning thresholds with a learned σ² (as jsparse's DEFAULT_PRUNE, learned column).
PRUNE = {"svd": 5e-4, "am": 5e-3}


def mode_product(t: np.ndarray, a: np.ndarray, mode: int) -> np.ndarray:
    """Contract axis `mode` of t with the columns of a (a: (P, t.shape[mode]))."""
    return np.moveaxis(np.tensordot(a, t, axes=(1, mode)), 0, mode)


def kron_apply(mats: Sequence[np.ndarray], v: np.ndarray) -> np.ndarray:
    """(A_1 ⊗ ... ⊗ A_I) v, last factor fastest, one mode product per factor."""
    t = v.reshape([a.shape[1] for a in mats])
    for i, a in enumerate(mats):
        t = mode_product(t, a, i)
    return t.reshape(-1)


def outer_flat(vs: Sequence[np.ndarray]) -> np.ndarray:
    out = vs[0]
    for v in vs[1:]:
        out = np.outer(out, v).reshape(-1)
    return out


def init_gammas(dims: Sequence[int]) -> list:
    """γ_i = N_i^{-1/2} 1 for i < I and γ_I = sqrt(∏_{i<I} N_i) 1 (⊗γ_i = 1)."""
    out = [np.full(n, n**-0.5) for n in dims[:-1]]
    return out + [np.full(dims[-1], float(np.prod(dims[:-1])) ** 0.5)]


def prune(gammas, rel):
    return [np.where(g < rel * g.max(), 0.0, g) for g in gammas]


def estep(y, factors, gammas, s2):
    """Posterior mean μ, diag Σ, ||y − Hμ||² and Σ p/(σ² + p) from the M_i x M_i eigenproblems."""
    us, ps, phis = [], [], []
    for h, g in zip(factors, gammas):
        hg = h * g
        a = hg @ h.T
        p, u = np.linalg.eigh(0.5 * (a + a.T))
        us.append(u)
        ps.append(np.maximum(p, 0))
        phis.append(hg.T @ u)
    p = outer_flat(ps)
    denom = s2 + p
    w = kron_apply([u.T for u in us], y) / denom
    mu = kron_apply(phis, w)
    dsig = np.maximum(outer_flat(gammas) - kron_apply([f**2 for f in phis], 1.0 / denom), 0)
    return mu, dsig, s2**2 * np.sum(w**2), np.sum(p / denom)


def svd_mstep(d, dims):
    out, rest = [], d
    for n in dims[:-1]:
        t = rest.reshape(n, -1)
        u = np.linalg.eigh(t @ t.T)[1][:, -1]
        out.append(np.abs(u))
        rest = t.T @ u
    return out + [np.abs(rest)]


def _inv0(v):
    """1/v where v > 0, else 0 (d/0 := 0 for pruned entries)."""
    out = np.zeros_like(v)
    np.divide(1.0, v, out=out, where=v > 0)
    return out


def am_sweep(d, gammas):
    """One Gauss–Seidel sweep: γ_i = mean over the active entries of the other factors of d / ∏γ_k."""
    gammas = list(gammas)
    dt = d.reshape([g.shape[0] for g in gammas])
    for i in range(len(gammas)):
        w, count = dt, 1.0
        for k, g in enumerate(gammas):
            if k != i:
                shape = [1] * len(gammas)
                shape[k] = g.shape[0]
                w = w * _inv0(g).reshape(shape)
                count *= np.count_nonzero(g)
        s = w.sum(axis=tuple(k for k in range(len(gammas)) if k != i))
        gammas[i] = s / count if count > 0 else np.zeros_like(s)
    return gammas


def normalise(gammas):
    out, scale = [], 1.0
    for g in gammas[:-1]:
        nrm = np.linalg.norm(g)
        out.append(g / nrm if nrm > 0 else np.zeros_like(g))
        scale *= nrm
    return out + [gammas[-1] * scale]


def rel_change(new, old):
    a, b = outer_flat(new), outer_flat(old)
    nb = np.linalg.norm(b)
    return np.linalg.norm(a - b) / nb if nb > 0 else 0.0


def am_mstep(d, gammas, inner_tol=1e-5, inner_max=100):
    """Normalised sweeps until the relative change of ⊗γ_i is <= inner_tol; returns (γ, sweeps)."""
    for k in range(inner_max):
        new = normalise(am_sweep(d, gammas))
        done = rel_change(new, gammas) <= inner_tol
        gammas = new
        if done:
            return gammas, k + 1
    return gammas, inner_max


def krosbl_np(y, factors, method="svd", max_iters=150, tol=1e-4, prune_rel=None):
    """SVD- or AM-KroSBL with a learned σ² (see the module docstring for the returned tuple)."""
    y = np.asarray(y, np.float64)
    factors = [np.asarray(f, np.float64) for f in factors]
    dims = [f.shape[1] for f in factors]
    rel = PRUNE[method] if prune_rel is None else prune_rel
    m = y.shape[0]
    tiny = np.sqrt(np.finfo(np.float64).tiny)
    floor = max(np.finfo(np.float64).eps * np.mean(y**2), tiny)
    s2 = max(0.1 * np.mean((y - y.mean()) ** 2), tiny)
    gammas, it, converged, sweeps = init_gammas(dims), 0, False, 0
    while it < max_iters and not converged:
        kept = prune(gammas, rel)
        mu, dsig, resid, dof = estep(y, factors, kept, s2)
        d = dsig + mu**2
        if method == "svd":
            new = svd_mstep(d, dims)
        else:
            new, n_sweeps = am_mstep(d, kept)
            sweeps += n_sweeps
        s2 = max((resid + s2 * dof) / m, floor)
        converged = rel_change(new, gammas) <= tol
        gammas, it = new, it + 1
        if not all(np.all(np.isfinite(g)) for g in gammas) or not np.isfinite(s2):
            converged = False
            break
    kept = prune(gammas, rel)
    x = estep(y, factors, kept, s2)[0]
    return x, tuple(kept), s2, it, converged, {"iterations": it, "inner_sweeps": sweeps}


# ----------------------------------------------------------------------------- arithmetic of one trial
EIGH_FLOPS = 9.0  # ≈ 9 n³ for a symmetric eigendecomposition with eigenvectors (Golub & Van Loan)


def _chain_flops(mats_shapes: Sequence[tuple], dims: Sequence[int]) -> float:
    """Flops of successive mode products: mode i maps dims[i] -> rows of the i-th (rows, cols) shape."""
    dims, total = list(dims), 0.0
    for i, (rows, cols) in enumerate(mats_shapes):
        total += 2.0 * rows * float(np.prod(dims))
        dims[i] = rows
    return total


def estep_flops(n: Sequence[int], m: Sequence[int]) -> float:
    """One matrix-free E-step: Grams, eigh, Φ_i, (⊗U_i)ᵀy, two (⊗Φ_i) products, O(N) extras."""
    f = sum(nn * mm + 2.0 * mm * mm * nn + EIGH_FLOPS * mm**3 + 2.0 * nn * mm * mm for nn, mm in zip(n, m))
    f += _chain_flops([(mm, mm) for mm in m], m)
    f += 2 * _chain_flops([(nn, mm) for nn, mm in zip(n, m)], m)
    return f + 10.0 * float(np.prod(n))


def svd_mstep_flops(n: Sequence[int]) -> float:
    f, rest = 0.0, float(np.prod(n))
    for nn in n[:-1]:
        r = rest / nn
        f += 2.0 * nn * nn * r + EIGH_FLOPS * nn**3 + 2.0 * nn * r
        rest = r
    return f


def am_sweep_flops(n: Sequence[int]) -> float:
    """One normalised sweep and its stopping test: I (I-1) N products, I N sums, ⊗γ and norms."""
    big, k = float(np.prod(n)), len(n)
    return k * (k - 1) * big + k * big + 7.0 * big


def flops_per_trial(n: Sequence[int], m: Sequence[int], method: str, counts: dict) -> float:
    """Arithmetic of one trial: its EM iterations (E-step, M-step, stopping test) and the final E-step."""
    big = float(np.prod(n))
    per_iter = estep_flops(n, m) + 6.0 * big + (svd_mstep_flops(n) if method == "svd" else 0.0)
    return counts["iterations"] * per_iter + counts["inner_sweeps"] * am_sweep_flops(n) + estep_flops(n, m)
