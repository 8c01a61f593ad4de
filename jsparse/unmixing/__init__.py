"""Hyperspectral unmixing: RRLbS (robust l2,1 loss + learned sparsity guidance) and baselines.

Shapes: images Y are (bands L, pixels N) with MATLAB column-major pixel order; endmembers are
(L, R); abundances (R, N). Every method returns an `UnmixingResult` and is jit- and vmap-able.

Solver objects (settings only; `init`, `step`, `result` over the data): `RRLbS`, `NMF`, `L12NMF`,
`L21NMF` (data Y; `init(Y, key)` or `init(Y, M0=..., A0=...)`) and `FCLS` (data Y, M), run by the
functions `rrlbs`, `nmf`, `l12_nmf`, `l21_nmf` and `fcls`. `initial_point` is the shared start.

Data: `load_dataset("samson" | "jasper" | "urban")` (Samson and Jasper Ridge ship with jsparse) and
`download_dataset(name)` (pinned public sources, SHA-256 checked; see `jsparse.unmixing.fetch`).
"""
from jsparse.unmixing._common import UnmixingResult, project_simplex, sparsity_lambda
from jsparse.unmixing.baselines import L12NMF, L21NMF, NMF, fcls, l12_nmf, l21_nmf, nmf, vca
from jsparse.unmixing.datasets import load_dataset
from jsparse.unmixing.fcls import FCLS, FCLSState
from jsparse.unmixing.fetch import download_dataset
from jsparse.unmixing.mu import MUState
from jsparse.unmixing.mu_solver import MUSolver
from jsparse.unmixing.rrlbs import RRLbS, rrlbs
from jsparse.unmixing.start import floor_start, initial_point
from jsparse.unmixing.vca import vca_indices

__all__ = [
    "UnmixingResult",
    "MUState",
    "FCLSState",
    "MUSolver",
    "RRLbS",
    "NMF",
    "L12NMF",
    "L21NMF",
    "FCLS",
    "rrlbs",
    "vca",
    "vca_indices",
    "fcls",
    "nmf",
    "l12_nmf",
    "l21_nmf",
    "initial_point",
    "floor_start",
    "project_simplex",
    "sparsity_lambda",
    "load_dataset",
    "download_dataset",
]
