"""Unmixing metrics built on jsparse.core.metrics (host-side: Hungarian matching uses scipy).

* SAD_k = arccos(<m_k, m_hat_k> / (||m_k|| ||m_hat_k||)) in radians, after matching estimated to
  true endmembers by the Hungarian assignment on the SAD matrix (minimum total angle).
* RMSE_k = sqrt(mean_n (A_kn - A_hat_kn)^2) of the matched abundance rows; the mean over k is the
  "abundance RMSE".
* Reconstruction error = ||Y - M_hat A_hat||_F / ||Y||_F; per-band residuals ||y^l - m_hat^l A_hat||_2
  (the plot that shows outlier channels).
* Duplicates: pairs of estimated endmembers closer than `duplicate_sad` radians (VCA/NMF failure
  mode when a material has no pure pixel).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jsparse.core import metrics as core_metrics

__all__ = ["Evaluation", "evaluate", "match_endmembers", "band_residuals"]


class Evaluation(NamedTuple):
    sad: np.ndarray  # (R,) radians, in ground-truth column order
    mean_sad: float
    rmse: np.ndarray  # (R,) abundance RMSE, ground-truth order
    mean_rmse: float
    reconstruction: float  # ||Y - M A||_F / ||Y||_F (nan if Y not given)
    order: np.ndarray  # (R,) estimated column matched to each ground-truth column
    duplicates: int  # number of estimated pairs within duplicate_sad


def _check(x, name, ndim):
    a = np.asarray(x, np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name}: zero-size array, shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or Inf values")
    return a


def match_endmembers(endmembers, true_endmembers) -> np.ndarray:
    """(R,) index of the estimated column matched to each true column (Hungarian on SAD)."""
    M = _check(endmembers, "endmembers", 2)
    T = _check(true_endmembers, "true_endmembers", 2)
    if M.shape != T.shape:
        raise ValueError(f"true_endmembers: shape {T.shape} differs from endmembers {M.shape}")
    cost = np.asarray(core_metrics.sad_matrix(M, T))
    return core_metrics.hungarian_match(cost).rows


def band_residuals(Y, endmembers, abundances) -> np.ndarray:
    """(L,) per-band residual norms ||y^l - m^l A||_2 / sqrt(N) (RMS over pixels)."""
    Y = _check(Y, "Y", 2)
    E = Y - _check(endmembers, "endmembers", 2) @ _check(abundances, "abundances", 2)
    return np.sqrt(np.mean(E * E, axis=1))


def evaluate(endmembers, abundances, true_endmembers, true_abundances, Y=None, *,
             duplicate_sad: float = 0.05) -> Evaluation:
    """SAD / RMSE after matching, reconstruction error and duplicate count for one result.

    Raises ValueError when the ground-truth shapes do not match the estimate's, naming the argument.
    """
    M = _check(endmembers, "endmembers", 2)
    A = _check(abundances, "abundances", 2)
    T = _check(true_endmembers, "true_endmembers", 2)
    TA = _check(true_abundances, "true_abundances", 2)
    if T.shape != M.shape:
        raise ValueError(f"true_endmembers: shape {T.shape} differs from endmembers {M.shape}")
    if TA.shape != A.shape:
        raise ValueError(f"true_abundances: shape {TA.shape} differs from abundances {A.shape}")
    if A.shape[0] != M.shape[1]:
        raise ValueError(f"abundances: {A.shape[0]} rows for {M.shape[1]} endmembers")
    order = match_endmembers(M, T)
    sad = np.asarray(core_metrics.sad(M[:, order], T))
    rmse = np.sqrt(np.mean((A[order] - TA) ** 2, axis=1))
    rec = float("nan")
    if Y is not None:
        Yc = _check(Y, "Y", 2)
        if Yc.shape != (M.shape[0], A.shape[1]):
            raise ValueError(f"Y: shape {Yc.shape} differs from ({M.shape[0]}, {A.shape[1]})")
        rec = float(np.linalg.norm(Yc - M @ A) / max(np.linalg.norm(Yc), 1e-300))
    S = np.asarray(core_metrics.sad_matrix(M, M))
    dup = int(np.sum(np.triu(S < duplicate_sad, k=1)))
    return Evaluation(sad, float(sad.mean()), rmse, float(rmse.mean()), rec, np.asarray(order), dup)
