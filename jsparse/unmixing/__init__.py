"""Hyperspectral unmixing: RRLbS (robust l2,1 loss + learned sparsity guidance) and baselines.

Shapes: images Y are (bands L, pixels N) with MATLAB column-major pixel order; endmembers are
(L, R); abundances (R, N). Every method returns an `UnmixingResult` and is jit- and vmap-able.
"""
from jsparse.unmixing._common import UnmixingResult, project_simplex, sparsity_lambda
from jsparse.unmixing.baselines import fcls, l12_nmf, l21_nmf, nmf, vca
from jsparse.unmixing.rrlbs import rrlbs
from jsparse.unmixing.vca import vca_indices

__all__ = [
    "UnmixingResult",
    "rrlbs",
    "vca",
    "vca_indices",
    "fcls",
    "nmf",
    "l12_nmf",
    "l21_nmf",
    "project_simplex",
    "sparsity_lambda",
]
