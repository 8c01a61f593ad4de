"""Plain NumPy reference implementations (dense, with column *deletion* as in the MATLAB code).

Independent of jsparse's matrix-free formulation: they form H = kron(H_1, ..., H_I) and the full
posterior covariance, delete pruned columns, and rebuild zero-filled full-length vectors.
"""
from __future__ import annotations

import numpy as np


def kron_all(mats):
    out = mats[0]
    for m in mats[1:]:
        out = np.kron(out, m)
    return out


def dense_posterior(y, H, gamma, sigma2):
    """μ and diag Σ by the textbook formulas with an explicit inverse."""
    G = np.diag(gamma)
    Sy = sigma2 * np.eye(H.shape[0]) + H @ G @ H.conj().T
    K = G @ H.conj().T @ np.linalg.inv(Sy)
    Sigma = G - K @ H @ G
    mu = K @ y
    return mu, np.real(np.diag(Sigma)), Sigma


def _svd_mstep(d, dims):
    out, rest = [], d
    for n in dims[:-1]:
        u, s, vt = np.linalg.svd(rest.reshape(n, -1), full_matrices=False)
        out.append(np.abs(u[:, 0]))
        rest = s[0] * vt[0]
    out.append(np.abs(rest))
    return out


def _am_sweep(D, gammas):
    gammas = [g.copy() for g in gammas]
    I = D.ndim
    for i in range(I):
        W = D.copy()
        for k in range(I):
            if k != i:
                shape = [1] * I
                shape[k] = -1
                W = W / gammas[k].reshape(shape)
        axes = tuple(k for k in range(I) if k != i)
        gammas[i] = W.mean(axis=axes)
    return gammas


def _normalise(gammas):
    out, scale = [], 1.0
    for g in gammas[:-1]:
        n = np.linalg.norm(g)
        out.append(g / n)
        scale *= n
    out.append(gammas[-1] * scale)
    return out


def krosbl_dense(y, factors, method, noise_var, iters, rel, inner_tol=1e-5):
    """`iters` EM iterations (no early stop) of SVD/AM/KSBL with deletion-based pruning.

    Returns (x, full-length gammas, sigma2)."""
    dims = [f.shape[1] for f in factors]
    keep = [np.arange(n) for n in dims]
    gam = [np.full(n, n**-0.5) for n in dims[:-1]]
    gam.append(np.full(dims[-1], float(np.prod(dims[:-1])) ** 0.5))
    learn = noise_var is None
    s2 = max(0.1 * np.var(y), 1e-300) if learn else noise_var

    def do_prune():
        for i in range(len(dims)):
            ok = gam[i] >= rel * gam[i].max()
            gam[i], keep[i] = gam[i][ok], keep[i][ok]

    for _ in range(iters):
        do_prune()
        H = kron_all([f[:, k] for f, k in zip(factors, keep)])
        g = kron_all([x[:, None] for x in gam])[:, 0]
        mu, dsig, _ = dense_posterior(y, H, g, s2)
        d = dsig + np.abs(mu) ** 2
        red = [len(k) for k in keep]
        if method == "svd":
            gam = _svd_mstep(d, red)
        elif method == "am":
            D = d.reshape(red)
            while True:
                new = _normalise(_am_sweep(D, gam))
                old_full, new_full = kron_all([x[:, None] for x in gam]), kron_all([x[:, None] for x in new])
                gam = new
                if np.linalg.norm(new_full - old_full) <= inner_tol * np.linalg.norm(old_full):
                    break
        else:
            gam = _normalise(_am_sweep(d.reshape(red), gam))
        if learn:
            resid = np.sum(np.abs(y - H @ mu) ** 2)
            s2 = (resid + s2 * np.sum(1 - dsig / g)) / y.shape[0]
    do_prune()
    H = kron_all([f[:, k] for f, k in zip(factors, keep)])
    g = kron_all([x[:, None] for x in gam])[:, 0]
    mu = dense_posterior(y, H, g, s2)[0]
    full = []
    for i, n in enumerate(dims):
        v = np.zeros(n)
        v[keep[i]] = gam[i]
        full.append(v)
    mask = kron_all([np.isin(np.arange(n), k).astype(float)[:, None] for n, k in zip(dims, keep)])[:, 0] > 0
    x = np.zeros(int(np.prod(dims)), dtype=np.result_type(y, factors[0]))
    x[mask] = mu
    return x, full, s2


def sbl_dense(y, H, noise_var, iters, rel):
    """Classic EM-SBL with the reference code's pinv and column deletion."""
    N = H.shape[1]
    keep = np.arange(N)
    g = np.ones(N)
    learn = noise_var is None
    s2 = 0.1 * np.var(y) if learn else noise_var
    for _ in range(iters):
        ok = g >= rel * g.max()
        g, keep = g[ok], keep[ok]
        Hk = H[:, keep]
        G = np.diag(g)
        Sigma = G - G @ Hk.conj().T @ np.linalg.pinv(s2 * np.eye(H.shape[0]) + Hk @ G @ Hk.conj().T) @ Hk @ G
        mu = Sigma @ Hk.conj().T @ y / s2
        dsig = np.real(np.diag(Sigma))
        if learn:
            s2 = (np.sum(np.abs(y - Hk @ mu) ** 2) + s2 * np.sum(1 - dsig / g)) / y.shape[0]
        g = dsig + np.abs(mu) ** 2
    ok = g >= rel * g.max()
    g, keep = g[ok], keep[ok]
    mu = dense_posterior(y, H[:, keep], g, s2)[0]
    x = np.zeros(N, dtype=np.result_type(y, H))
    x[keep] = mu
    full = np.zeros(N)
    full[keep] = g
    return x, full, s2


def omp_dense(y, H, max_atoms, tol):
    r, S = y.copy(), []
    norms = np.linalg.norm(H, axis=0)
    x = np.zeros(H.shape[1], dtype=np.result_type(y, H))
    for _ in range(max_atoms):
        c = np.abs(H.conj().T @ r) / norms
        c[S] = -1
        S.append(int(np.argmax(c)))
        coef = np.linalg.lstsq(H[:, S], y, rcond=None)[0]
        x = np.zeros_like(x)
        x[S] = coef
        r = y - H @ x
        if np.linalg.norm(r) <= tol * np.linalg.norm(y):
            break
    return x


def kron_omp_dense(y, factors, max_atoms, tol):
    """N-way OMP by brute force on the dense Kronecker matrix."""
    dims = [f.shape[1] for f in factors]
    H = kron_all(factors)
    norms = np.linalg.norm(H, axis=0)
    sets = [set() for _ in dims]
    r = y.copy()
    x = np.zeros(H.shape[1], dtype=np.result_type(y, H))
    while True:
        j = np.unravel_index(np.argmax(np.abs(H.conj().T @ r) / norms), dims)
        new = [s | {int(a)} for s, a in zip(sets, j)]
        if all(len(a) == len(b) for a, b in zip(new, sets)) or any(len(s) > c for s, c in zip(new, max_atoms)):
            break
        sets = new
        idx = [sorted(s) for s in sets]
        cols = np.ravel_multi_index(np.meshgrid(*idx, indexing="ij"), dims).reshape(-1)
        coef = np.linalg.lstsq(H[:, cols], y, rcond=None)[0]
        x = np.zeros_like(x)
        x[cols] = coef
        r = y - H @ x
        if np.linalg.norm(r) <= tol * np.linalg.norm(y):
            break
    return x, sets
