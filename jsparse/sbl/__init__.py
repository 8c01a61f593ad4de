"""Sparse Bayesian learning family (He & Joseph, TSP 2024, and baselines).

Solve functions (validate, build a solver object, run it; each returns the object's result)::

    krosbl(y, factors, method="svd"|"am"|"ksbl"|"pc", noise_var=None, ...)  Kronecker SBL (matrix-free)
    pc_krosbl(y, factors, beta=0.8, coupled=(0, 2), ...)               pattern-coupled (block-sparse) KroSBL
    pc_sbl(y, H, beta=..., ...)                                         PC-SBL baseline, vectorised problem
    csbl_kron(y, factors, noise_var=...)                                cSBL with a structured Kronecker E-step
    sbl(y, H, noise_var=None, ...)                                      classic EM-SBL, dense H or factors
    kron_omp(y, factors, max_atoms=(10, 10, 10), tol=1e-2)             N-way OMP (Caiafa–Cichocki)
    omp(y, H, max_atoms=..., tol=...)                                   OMP, dense H
    oracle_ls(y, H_or_factors, support)                                 least squares on a support

Solver objects (settings only; `init(*data)`, `step(state, *data)`, `result(state, *data)`):
`KroSBL` and `PCKroSBL` (data (y, factors)), `PCSBL` and `SBL` (data (y, H), H dense or factors),
`OMP` (y, H) and `KronOMP` (y, factors). `nmse_trace(solver, x_true)` is a ready-made `trace_fn`.

Modules: `irs` (IRS-MIMO simulator, NMSE and QPSK SER), `synthetic` (the paper's problems).
Conventions: x has length prod(N_i) with the last factor fastest, y ≈ kron(H_1, ..., H_I) @ x.
"""
from jsparse.sbl import irs, synthetic
from jsparse.sbl._common import SBLResult, nmse_trace
from jsparse.sbl.classic import SBL, sbl
from jsparse.sbl.krosbl import KroSBL, krosbl
from jsparse.sbl.omp import OMP, KronOMP, OMPResult, kron_omp, omp, oracle_ls
from jsparse.sbl.pc import PCKroSBL, pc_krosbl
from jsparse.sbl.pcsbl import PCSBL, csbl_kron, pc_sbl

__all__ = [
    "krosbl", "pc_krosbl", "pc_sbl", "csbl_kron", "sbl", "kron_omp", "omp", "oracle_ls",
    "KroSBL", "PCKroSBL", "PCSBL", "SBL", "OMP", "KronOMP", "nmse_trace",
    "SBLResult", "OMPResult", "synthetic", "irs",
]
