"""RRLbS (Zhu et al., arXiv:1409.0685): channel-robust l2,1 loss + learned sparse guidance map.

The paper text beyond the abstract was not available; the objective and updates implemented
here are the reconstruction documented in docs/unmixing.md and in `jsparse.unmixing.mu`.
`solve_mu` is the jitted core shared with the NMF-family baselines (`baselines.py`).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jsparse.core import runner
from jsparse.core.validation import check_array, check_choice, check_int, check_positive
from jsparse.unmixing._common import UnmixingResult, check_image, check_num_endmembers, mm, sparsity_lambda
from jsparse.unmixing.mu import GUIDANCES, LOSSES, MUArgs, MUConfig, mu_init, mu_step
from jsparse.unmixing.vca import vca_fcls

__all__ = ["rrlbs", "solve_mu", "mu_method"]

INITS = ("vca", "vca_whitened", "random")


def _initial_point(Y, R, key, init, fcls_iters, init_floor):
    """(M0, A0): VCA pixels + FCLS abundances, or random pixels + uniform abundances.

    "vca_whitened" runs VCA and FCLS on the noise-whitened rows s_l * y^l (`robust.whitening_scales`),
    so that corrupted bands do not choose the pixels; M0 is still made of the raw pixels.

    A0 is pulled towards the barycentre by `init_floor` (A0 + f) / (1 + R f): multiplicative
    updates cannot move an entry away from exactly zero, and this keeps the sum-to-one.
    """
    N = Y.shape[1]
    if init in ("vca", "vca_whitened"):
        M0, A0, _ = vca_fcls(Y, R, key, whiten=init == "vca_whitened", fcls_iters=fcls_iters, tol=0.0)
    else:
        idx = jax.random.choice(key, N, (R,), replace=False)
        M0 = Y[:, idx]
        A0 = jnp.full((R, N), 1.0 / R, Y.dtype)
    f = jnp.asarray(init_floor, Y.dtype)
    A0 = (A0 + f) / (1.0 + R * f)
    # Strictly positive endmembers for the same reason (a zero reflectance would stay zero).
    M0 = jnp.maximum(M0, 1e-6 * jnp.max(Y))
    return M0, A0


@partial(jax.jit, static_argnames=("R", "cfg", "init", "max_iters", "adjoint", "fcls_iters"))
def solve_mu(Y, key, M0, A0, lam, gamma, delta, tol, budget_frac, init_floor, *, R, cfg, init, max_iters,
             adjoint, fcls_iters):
    """Traced core (no validation). M0/A0 of shape (0, 0) mean "compute the initial point"."""
    dtype = Y.dtype
    L, N = Y.shape
    if M0.size == 0:
        M0, A0 = _initial_point(Y, R, key, init, fcls_iters, init_floor)
    M0, A0 = M0.astype(dtype), A0.astype(dtype)
    lam = jnp.where(jnp.isnan(lam), sparsity_lambda(Y), lam).astype(dtype)
    gamma = jnp.where(jnp.isnan(gamma), lam / 8.0, gamma).astype(dtype)
    eps = (1e-6 * jnp.sqrt(jnp.sum(Y * Y) / L)).astype(dtype)
    if cfg.loss == "l21":
        norms0 = jnp.sqrt(jnp.sum((Y - mm(M0, A0)) ** 2, axis=1) + eps * eps)
        tau = 1.0 / jnp.mean(1.0 / norms0)  # harmonic mean of the initial channel residual norms
    else:
        tau = jnp.ones((), dtype)
    args = MUArgs(Y, lam, gamma, (jnp.asarray(delta, dtype) ** 2), jnp.asarray(budget_frac * N, dtype),
                  tau.astype(dtype), eps, jnp.asarray(tol, dtype))
    state = mu_init(cfg, M0, A0, args)
    step = lambda st, a: mu_step(st, cfg, a)  # noqa: E731 - cfg is static, args travel as data
    trace = lambda st, a: st.objective  # noqa: E731
    final, info = runner.run(step, state, (args,), max_iters=max_iters, adjoint=adjoint, trace_fn=trace)
    A = jnp.maximum(final.A, 0.0)
    A = A / jnp.maximum(jnp.sum(A, axis=0, keepdims=True), jnp.finfo(dtype).tiny)
    return UnmixingResult(final.M, A, final.h, info.trace, info.iterations, info.converged)


def _nan_if_none(v, name):
    if v is None:
        return np.nan
    check_positive(v, name, allow_zero=True)
    return v


def mu_method(Y, num_endmembers, *, cfg: MUConfig, key=None, lam=None, gamma=None, delta=15.0, budget=1.0,
              init="vca", init_endmembers=None, init_abundances=None, init_floor=1e-2, max_iters=1000,
              tol=1e-6, adjoint="none", fcls_iters=200, clip_negative=False) -> UnmixingResult:
    """Validate and run one member of the multiplicative-update family (see `rrlbs` for the args)."""
    Y = check_image(Y, clip_negative=clip_negative)
    L, N = Y.shape
    R = check_num_endmembers(num_endmembers, L)
    check_choice(cfg.loss, "loss", LOSSES)
    check_choice(cfg.guidance, "guidance", GUIDANCES)
    if not (0.0 < cfg.p <= 1.0):
        raise ValueError(f"p: expected a value in (0, 1], got {cfg.p!r}")
    check_choice(init, "init", INITS)
    check_int(max_iters, "max_iters", minimum=1)
    check_int(fcls_iters, "fcls_iters", minimum=1)
    check_positive(tol, "tol", allow_zero=True)
    check_positive(delta, "delta", allow_zero=True)
    check_positive(budget, "budget")
    check_positive(init_floor, "init_floor", allow_zero=True)
    runner.check_adjoint(adjoint, implicit_available=False)
    lam = _nan_if_none(lam, "lam")
    gamma = _nan_if_none(gamma, "gamma")
    if (init_endmembers is None) != (init_abundances is None):
        raise ValueError("init_endmembers: pass init_endmembers and init_abundances together")
    if init_endmembers is not None:
        M0 = check_array(init_endmembers, "init_endmembers", shape=(L, R), dtype="float", nonnegative=True)
        A0 = check_array(init_abundances, "init_abundances", shape=(R, N), dtype="float", nonnegative=True)
    else:
        M0 = A0 = jnp.zeros((0, 0), Y.dtype)
    if key is None:
        if init_endmembers is None:
            raise ValueError("key: a PRNG key is needed for the VCA / random initialisation")
        key = jax.random.PRNGKey(0)
    return solve_mu(Y, key, M0, A0, lam, gamma, delta, tol, budget, init_floor, R=R, cfg=cfg, init=init,
                    max_iters=max_iters, adjoint=adjoint, fcls_iters=fcls_iters)


def rrlbs(Y, num_endmembers: int, *, p: float = 0.5, lam=None, gamma=None, delta: float = 15.0,
          budget: float = 1.0, map_form: str = "simplex", loss: str = "l21", key=None, init: str = "vca",
          init_endmembers=None, init_abundances=None, init_floor: float = 1e-2, max_iters: int = 1000,
          tol: float = 1e-6, adjoint: str = "none", fcls_iters: int = 200,
          clip_negative: bool = False) -> UnmixingResult:
    """Robust representation + learning-based sparsity unmixing (RRLbS, reconstructed).

    Minimises, over M >= 0, A >= 0 and a guidance map h in {h >= 0, sum h = budget * N}::

        tau sum_l ||y^l - m^l A||_2 + delta^2/2 ||1^T A - 1^T||^2 + lam sum_n h_n ||a_n||_p^p + gamma ||h||^2

    by multiplicative updates (see `jsparse.unmixing.mu` and docs/unmixing.md).

    Args:
      Y: (L, N) image, bands x pixels, non-negative reflectances (float32 or float64).
      num_endmembers: R, with 2 <= R < L.
      p: exponent of the sparsity term, 0 < p <= 1.
      lam: sparsity weight; None = the L1/2-NMF heuristic lambda_e of Y.
      gamma: map regulariser (larger = flatter map); None = lam / 8.
      delta: weight of the soft sum-to-one row (15 in the L1/2-NMF line of work, data in [0, 1]).
      budget: mean of the guidance map (sum h = budget * N); 1 makes h = 1 the uniform map.
      map_form: "simplex" (variant R1, the default) or "exponent" (variant R2: per-pixel exponent
        q_n = 1 - (1 - p) h_n with h_n the re-estimated purity; not guaranteed monotone).
      loss: "l21" (channel-robust, the default) or "fro" (ablation: Frobenius loss + learned map).
      key: PRNG key for the initialisation (required unless init_endmembers is given).
      init: "vca" (VCA pixels + FCLS abundances), "vca_whitened" (the same on noise-whitened bands,
        robust to outlier channels; `jsparse.unmixing.robust`) or "random" (random pixels + uniform
        abundances).
      init_endmembers, init_abundances: explicit (L, R) / (R, N) starting point (overrides init).
      init_floor: A0 <- (A0 + f) / (1 + R f) so that no abundance starts at exactly zero.
      max_iters, tol: budget and relative-objective-change stopping rule.
      adjoint: "none" (early stop) or "unrolled" (reverse-differentiable scan).
      fcls_iters: iterations of the FCLS solve inside the VCA initialisation.
      clip_negative: clip negative reflectances to 0 instead of raising.

    Returns:
      UnmixingResult (endmembers (L, R), abundances (R, N) renormalised to sum to one, guidance
      (N,), objective trace (max_iters,), iterations, converged).
    """
    check_choice(map_form, "map_form", ("simplex", "exponent"))
    guidance = "learned" if map_form == "simplex" else "exponent"
    cfg = MUConfig(loss=loss, guidance=guidance, p=float(p))
    return mu_method(Y, num_endmembers, cfg=cfg, key=key, lam=lam, gamma=gamma, delta=delta, budget=budget,
                     init=init, init_endmembers=init_endmembers, init_abundances=init_abundances,
                     init_floor=init_floor, max_iters=max_iters, tol=tol, adjoint=adjoint,
                     fcls_iters=fcls_iters, clip_negative=clip_negative)

