"""Sparse Bayesian learning family (He & Joseph, TSP 2024, and baselines).

    krosbl(y, factors, method="svd"|"am"|"ksbl"|"pc", noise_var=None, ...)  Kronecker SBL (matrix-free)
    pc_krosbl(y, factors, beta=0.8, coupled=(0, 2), ...)               pattern-coupled (block-sparse) KroSBL
    pc_sbl(y, H, beta=..., ...)                                         PC-SBL baseline, vectorised problem
    csbl_kron(y, factors, noise_var=...)                                cSBL with a structured Kronecker E-step
    irs                                                                 IRS-MIMO simulator, NMSE and QPSK SER
    sbl(y, H, noise_var=None, ...)                                      classic EM-SBL, dense H
    kron_omp(y, factors, max_atoms=(10, 10, 10), tol=1e-2)             N-way OMP (Caiafa–Cichocki)
    omp(y, H, max_atoms=..., tol=...)                                   OMP, dense H
    oracle_ls(y, H_or_factors, support)                                 least squares on a support
    synthetic                                                           the paper's problems

Conventions: x has length prod(N_i) with the last factor fastest, y ≈ kron(H_1, ..., H_I) @ x.
"""
from jsparse.sbl import irs, synthetic
from jsparse.sbl._common import SBLResult
from jsparse.sbl.classic import sbl
from jsparse.sbl.krosbl import krosbl
from jsparse.sbl.omp import OMPResult, kron_omp, omp, oracle_ls
from jsparse.sbl.pc import csbl_kron, pc_krosbl, pc_sbl

__all__ = [
    "krosbl", "pc_krosbl", "pc_sbl", "csbl_kron", "sbl", "kron_omp", "omp", "oracle_ls",
    "SBLResult", "OMPResult", "synthetic", "irs",
]
