"""RRLbS (Zhu et al., arXiv:1409.0685): channel-robust l2,1 loss + learned sparse guidance map.

The paper text beyond the abstract was not available; the objective and updates implemented
here are the reconstruction documented in docs/unmixing.md and in `jsparse.unmixing.mu`.
`RRLbS` is the solver object (the multiplicative-update engine of `jsparse.unmixing.mu_solver`
with RRLbS's defaults); `rrlbs` validates, builds one and runs it.
"""
from __future__ import annotations

from jsparse.core.adjoint import Adjoint
from jsparse.core.validation import check_choice
from jsparse.unmixing._common import UnmixingResult
from jsparse.unmixing.mu_solver import MUSolver, mu_method

__all__ = ["RRLbS", "rrlbs"]

MAP_FORMS = {"simplex": "learned", "exponent": "exponent"}  # map_form -> the engine's guidance


class RRLbS(MUSolver):
    """RRLbS as a solver object; data: Y (L, N). The settings of `MUSolver` with RRLbS's defaults.

    loss "l21" (or "fro"), guidance "learned" (`rrlbs`'s map_form "simplex") or "exponent"
    (map_form "exponent"), p = 0.5, lam = None (lambda_e of Y), gamma = None (lam / 8), delta = 15,
    budget = 1, start "vca_screened".

    Example::

        solver = RRLbS(4, max_iters=200)
        state = solver.init(Y, jax.random.PRNGKey(0))          # floored VCA-FCLS start
        state, _ = jax.lax.scan(lambda s, _: (solver.step(s, Y), None), state, None, length=200)
        res = solver.result(state, Y)                           # UnmixingResult (objective None)
    """


def rrlbs(Y, num_endmembers: int, *, p: float = 0.5, lam=None, gamma=None, delta: float = 15.0,
          budget: float = 1.0, map_form: str = "simplex", loss: str = "l21", key=None, init: str = "vca_screened",
          init_endmembers=None, init_abundances=None, init_floor: float = 1e-2, max_iters: int = 1000,
          tol: float = 1e-6, adjoint: str | Adjoint = "none", fcls_iters: int = 200,
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
      key: PRNG key or int seed for the initialisation (required unless init_endmembers is given).
      init: "vca_screened" (the default: VCA pixels + FCLS abundances computed on outlier-screened
        bands, `jsparse.unmixing.robust.screening_scales`; exactly "vca" when no band's noise exceeds
        50x the median), "vca" (plain VCA-FCLS), "vca_whitened" (the same on noise-whitened bands)
        or "random" (random pixels + uniform abundances). The start is
        `initial_point(Y, R, key, init=..., fcls_iters=..., init_floor=...)`.
      init_endmembers, init_abundances: explicit (L, R) / (R, N) starting point (overrides init; used as is).
      init_floor: A0 <- (A0 + f) / (1 + R f) so that no abundance starts at exactly zero.
      max_iters, tol: budget and relative-objective-change stopping rule.
      adjoint: "none" (early stop) or "unrolled" (reverse-differentiable scan).
      fcls_iters: iterations of the FCLS solve inside the VCA initialisation.
      clip_negative: clip negative reflectances to 0 instead of raising.

    Returns:
      UnmixingResult (endmembers (L, R), abundances (R, N) renormalised to sum to one, guidance
      (N,), objective trace (max_iters,), iterations, converged).
    """
    check_choice(map_form, "map_form", tuple(MAP_FORMS))
    return mu_method(RRLbS, Y, num_endmembers, loss=loss, guidance=MAP_FORMS[map_form], p=p, key=key, lam=lam,
                     gamma=gamma, delta=delta, budget=budget, init=init, init_endmembers=init_endmembers,
                     init_abundances=init_abundances, init_floor=init_floor, max_iters=max_iters, tol=tol,
                     adjoint=adjoint, fcls_iters=fcls_iters, clip_negative=clip_negative)
