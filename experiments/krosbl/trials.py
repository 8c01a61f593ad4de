"""Trial functions and single-realisation convergence runs for the KroSBL reproduction.

Paper setup (He & Joseph, TSP 2024; notes §7.1): N_i = 15 (N = 3375), M = (M_1, 12, 15) with
H_1 drawn 14 x 15 and its first M_1 rows used, K active positions per factor, real Gaussian
factors, x = x_1 ⊗ x_2 ⊗ x_3 (Fig. 2, 3, 5) or i.i.d. N(0, 0.05) values on a Kronecker support
(Fig. 4). Everything runs in float64 (the notes' recommendation for pruning ratios ~1e-3).
"""
from __future__ import annotations

import jax.numpy as jnp

from jsparse.core.metrics import nmse, support_jaccard
from jsparse.sbl import kron_omp, krosbl, oracle_ls, sbl
from jsparse.sbl.synthetic import kron_problem

N_PAPER = (15, 15, 15)
M1_MAX = 14
KRON_METHODS = ("svd", "am", "ksbl")
LABELS = {"svd": "SVD-KroSBL", "am": "AM-KroSBL", "ksbl": "KSBL", "csbl": "cSBL", "komp": "KOMP", "ols": "Oracle LS"}


def problem(key, *, n, m, k, snr_db, values="kron"):
    return kron_problem(key, n, m, k, snr_db, values=values, m_first_max=max(M1_MAX, m[0]), dtype=jnp.float64)


def trial(key, snr_db=25.0, k=3, *, method="svd", m=(8, 12, 15), n=N_PAPER, known_noise=True, max_iters=150):
    """One Monte Carlo trial: returns NMSE, support recovery (Jaccard, 1e-3), iterations, converged."""
    p = problem(key, n=n, m=m, k=k, snr_db=snr_db)
    nv = p.noise_var if known_noise else None
    if method in KRON_METHODS:
        r = krosbl(p.y, p.factors, method=method, noise_var=nv, max_iters=max_iters)
        x, it, conv = r.x, r.iterations, r.converged
    elif method == "csbl":
        r = sbl(p.y, p.factors, noise_var=nv, max_iters=max_iters)  # structured E-step, same iterates as dense H
        x, it, conv = r.x, r.iterations, r.converged
    elif method == "komp":
        r = kron_omp(p.y, p.factors, max_atoms=(10, 10, 10), tol=1e-2)
        x, it, conv = r.x, r.iterations, r.converged
    elif method == "ols":
        x, it, conv = oracle_ls(p.y, p.factors, p.supports), jnp.asarray(0), jnp.asarray(True)
    else:
        raise ValueError(f"method: unknown {method!r}")
    return {"nmse": nmse(x, p.x), "srr": support_jaccard(x, p.x, 1e-3), "iterations": it, "converged": conv}


def convergence(key, *, method, n, m, k, snr_db, values, known_noise, iters, prune, inner_tol=1e-10):
    """NMSE after each EM iteration for one realisation (Fig. 2 / Fig. 4). Returns a NumPy array."""
    import numpy as np

    p = problem(key, n=n, m=m, k=k, snr_db=snr_db, values=values)
    nv = p.noise_var if known_noise else None
    if method in KRON_METHODS:
        kw = {} if prune is None else {"prune": prune}
        res = krosbl(p.y, p.factors, method=method, noise_var=nv, max_iters=iters, tol=0.0, inner_tol=inner_tol,
                     x_true=p.x, **kw)
        return np.asarray(res.trace)
    res = sbl(p.y, p.factors, noise_var=nv, max_iters=iters, tol=0.0, prune=prune if prune is not None else 1e-3,
              x_true=p.x)
    return np.asarray(res.trace)
