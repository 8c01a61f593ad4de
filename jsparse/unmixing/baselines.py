"""Baselines with the same result shape as `rrlbs`.

* `vca`, `fcls` — endmember extraction and fully constrained abundances (vca.py, fcls.py).
* `nmf`      — Frobenius multiplicative updates with the soft sum-to-one row (lam = 0).
* `l12_nmf`  — L1/2-NMF (Qian et al. 2011): Frobenius loss + uniform l_p sparsity, p = 1/2.
* `l21_nmf`  — the ablation of RRLbS without learned sparsity: channel-l2,1 loss + uniform l_p.
All share the engine in mu.py and the initialisation of `rrlbs` (VCA + FCLS by default), so a
comparison at the same key starts every method from the same point.
"""
from __future__ import annotations

from jsparse.unmixing.fcls import fcls
from jsparse.unmixing.mu import MUConfig
from jsparse.unmixing.rrlbs import mu_method
from jsparse.unmixing.vca import vca

__all__ = ["vca", "fcls", "nmf", "l12_nmf", "l21_nmf"]

_DOC_ARGS = """
    Args (as in `rrlbs`): Y (L, N); num_endmembers R (2 <= R < L); key; delta; init;
      init_endmembers / init_abundances; init_floor; max_iters; tol; adjoint ("none" or "unrolled");
      fcls_iters; clip_negative.
    Returns: UnmixingResult (the guidance is zeros for nmf and ones for the uniform-sparsity methods).
"""


def nmf(Y, num_endmembers: int, **kwargs):
    """NMF with Frobenius loss, multiplicative updates and the soft sum-to-one row (delta)."""
    _reject(kwargs, ("lam", "gamma", "p", "budget"))
    return mu_method(Y, num_endmembers, cfg=MUConfig("fro", "none", 1.0), lam=0.0, **kwargs)


def l12_nmf(Y, num_endmembers: int, *, p: float = 0.5, lam=None, **kwargs):
    """L1/2-NMF: 1/2||Y - MA||^2 + delta^2/2||1^T A - 1^T||^2 + lam sum A^p (lam=None: lambda_e)."""
    _reject(kwargs, ("gamma", "budget"))
    return mu_method(Y, num_endmembers, cfg=MUConfig("fro", "uniform", float(p)), lam=lam, **kwargs)


def l21_nmf(Y, num_endmembers: int, *, p: float = 0.5, lam=None, **kwargs):
    """Channel-l2,1 loss + uniform l_p sparsity (RRLbS without the learned map); lam=0: pure l2,1-NMF."""
    _reject(kwargs, ("gamma", "budget"))
    return mu_method(Y, num_endmembers, cfg=MUConfig("l21", "uniform", float(p)), lam=lam, **kwargs)


for _f in (nmf, l12_nmf, l21_nmf):
    _f.__doc__ += _DOC_ARGS


def _reject(kwargs, names):
    for n in names:
        if n in kwargs:
            raise ValueError(f"{n}: not a setting of this method")
