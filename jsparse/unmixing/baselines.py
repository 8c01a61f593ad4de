"""Baselines with the same result shape as `rrlbs`.

* `vca`, `fcls` — endmember extraction and fully constrained abundances (vca.py, fcls.py).
* `nmf` / `NMF`          — Frobenius multiplicative updates with the soft sum-to-one row (lam = 0).
* `l12_nmf` / `L12NMF`   — L1/2-NMF (Qian et al. 2011): Frobenius loss + uniform l_p sparsity, p = 1/2.
* `l21_nmf` / `L21NMF`   — the ablation of RRLbS without learned sparsity: channel-l2,1 loss + uniform l_p.
The classes are `MUSolver`s (jsparse.unmixing.mu_solver) with other defaults, so they share the
engine of RRLbS and its start (`initial_point`, VCA + FCLS by default): a comparison at the same
key starts every method from the same point.
"""
from __future__ import annotations

from typing import Any

from flax import struct

from jsparse.unmixing.fcls import fcls
from jsparse.unmixing.mu_solver import MUSolver, mu_method
from jsparse.unmixing.vca import vca

__all__ = ["NMF", "L12NMF", "L21NMF", "vca", "fcls", "nmf", "l12_nmf", "l21_nmf"]

_DOC_ARGS = """
    Args (as in `rrlbs`): Y (L, N); num_endmembers R (2 <= R < L); key; delta; init;
      init_endmembers / init_abundances; init_floor; max_iters; tol; adjoint ("none" or "unrolled");
      fcls_iters; clip_negative.
    Returns: UnmixingResult (the guidance is zeros for nmf and ones for the uniform-sparsity methods).
"""


class NMF(MUSolver):
    """NMF as a solver object (data: Y (L, N)): Frobenius loss, no sparsity term (lam = 0, guidance "none")."""

    lam: Any = 0.0
    loss: str = struct.field(pytree_node=False, default="fro")
    guidance: str = struct.field(pytree_node=False, default="none")
    p: float = struct.field(pytree_node=False, default=1.0)


class L12NMF(MUSolver):
    """L1/2-NMF as a solver object (data: Y (L, N)): Frobenius loss + uniform l_p sparsity (lam None: lambda_e)."""

    loss: str = struct.field(pytree_node=False, default="fro")
    guidance: str = struct.field(pytree_node=False, default="uniform")


class L21NMF(MUSolver):
    """Channel-l2,1 loss + uniform l_p sparsity as a solver object (data: Y (L, N)); lam = 0: pure l2,1-NMF."""

    guidance: str = struct.field(pytree_node=False, default="uniform")


def nmf(Y, num_endmembers: int, **kwargs):
    """NMF with Frobenius loss, multiplicative updates and the soft sum-to-one row (delta)."""
    _reject(kwargs, ("lam", "gamma", "p", "budget", "loss", "guidance"))
    return mu_method(NMF, Y, num_endmembers, lam=0.0, **kwargs)


def l12_nmf(Y, num_endmembers: int, *, p: float = 0.5, lam=None, **kwargs):
    """L1/2-NMF: 1/2||Y - MA||^2 + delta^2/2||1^T A - 1^T||^2 + lam sum A^p (lam=None: lambda_e)."""
    _reject(kwargs, ("gamma", "budget", "loss", "guidance"))
    return mu_method(L12NMF, Y, num_endmembers, p=p, lam=lam, **kwargs)


def l21_nmf(Y, num_endmembers: int, *, p: float = 0.5, lam=None, **kwargs):
    """Channel-l2,1 loss + uniform l_p sparsity (RRLbS without the learned map); lam=0: pure l2,1-NMF."""
    _reject(kwargs, ("gamma", "budget", "loss", "guidance"))
    return mu_method(L21NMF, Y, num_endmembers, p=p, lam=lam, **kwargs)


for _f in (nmf, l12_nmf, l21_nmf):
    _f.__doc__ = (_f.__doc__ or "") + _DOC_ARGS


def _reject(kwargs, names):
    for n in names:
        if n in kwargs:
            raise ValueError(f"{n}: not a setting of this method")
