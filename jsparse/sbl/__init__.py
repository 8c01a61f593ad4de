"""Sparse Bayesian learning family (He & Joseph, TSP 2024, and baselines).

    krosbl(y, factors, method="svd"|"am"|"ksbl", noise_var=None, ...)  Kronecker SBL (matrix-free)
    sbl(y, H, noise_var=None, ...)                                      classic EM-SBL, dense H
    kron_omp(y, factors, max_atoms=(10, 10, 10), tol=1e-2)             N-way OMP (Caiafa–Cichocki)
    omp(y, H, max_atoms=..., tol=...)                                   OMP, dense H
    oracle_ls(y, H_or_factors, support)                                 least squares on a support
    synthetic                                                           the paper's problems

Conventions: x has length prod(N_i) with the last factor fastest, y ≈ kron(H_1, ..., H_I) @ x.
"""
from jsparse.sbl import synthetic
from jsparse.sbl._common import SBLResult
from jsparse.sbl.classic import sbl
from jsparse.sbl.krosbl import krosbl
from jsparse.sbl.omp import OMPResult, kron_omp, omp, oracle_ls

__all__ = ["krosbl", "sbl", "kron_omp", "omp", "oracle_ls", "SBLResult", "OMPResult", "synthetic"]
