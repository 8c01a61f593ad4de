"""The EM engine of the Kronecker SBL methods (KroSBL, AM-KroSBL, KSBL, PC-KroSBL).

Every method is the same outer iteration, `KroEngine.step`: prune (zero small γ_i entries) ->
E-step (matrix-free, `_estep`) -> M-step (`_mstep`) -> optional EM noise update, with the prior
x ~ N(0, diag(γ_1 ⊗ ... ⊗ γ_I)). A method is one row of `METHODS`: an (E-step, M-step) pair of
strategies picked once from `ESTEPS` and `MSTEPS`:

| method | E-step | M-step |
|--------|--------|--------|
| "svd"  | "eig_m": M_i x M_i eigh (`posterior_eig_m`) | "svd": successive rank-one SVD of d |
| "am"   | "eig_m" | "am": AM sweeps to convergence + normalisation |
| "ksbl" | "eig_n": N_i x N_i eigh (`posterior_eig_n`) | "sweep": one AM sweep + normalisation |
| "pc"   | "eig_m" | "pc": AM sweeps with the pattern-coupled factor update |

Adding a method is adding a row (and, if it needs one, a strategy): the loop, the fixed-point map
of the implicit adjoint, the result and the traces come with the engine. Inner M-step loops run
through the adjoint's `inner_loop`, so the differentiable adjoints scan at most `inner_cap` sweeps.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jsparse.core import runner
from jsparse.sbl import _common as C
from jsparse.sbl import _scale as S
from jsparse.sbl._estep import Posterior, posterior_eig_m, posterior_eig_n
from jsparse.sbl._mstep import am_mstep, am_sweep, normalise, svd_mstep

__all__ = ["KroEngine", "KroState", "METHODS", "ESTEPS", "MSTEPS"]


def _svd(solver: Any, d: jax.Array, gammas: tuple) -> tuple:
    return svd_mstep(d, [g.shape[0] for g in gammas])


def _am(solver: Any, d: jax.Array, gammas: tuple) -> tuple:
    adjoint = runner.check_adjoint(solver.adjoint)
    return am_mstep(d, gammas, adjoint, inner_tol=solver.inner_tol, inner_max=solver.inner_max)


def _sweep(solver: Any, d: jax.Array, gammas: tuple) -> tuple:
    return normalise(am_sweep(d, gammas))


def _pattern_coupled(solver: Any, d: jax.Array, gammas: tuple) -> tuple:
    adjoint = runner.check_adjoint(solver.adjoint)
    update = solver.factor_update([g.shape[0] for g in gammas], d.dtype)
    return am_mstep(d, gammas, adjoint, inner_tol=solver.inner_tol, inner_max=solver.inner_max, update=update)


# E-steps: (y, factors, gammas, σ²) -> Posterior.  M-steps: (solver, d, pruned gammas) -> gammas.
ESTEPS: dict[str, Callable[..., Posterior]] = {"eig_m": posterior_eig_m, "eig_n": posterior_eig_n}
MSTEPS: dict[str, Callable[..., tuple]] = {"svd": _svd, "am": _am, "sweep": _sweep, "pc": _pattern_coupled}
METHODS = {"svd": ("eig_m", "svd"), "am": ("eig_m", "am"), "ksbl": ("eig_n", "sweep"), "pc": ("eig_m", "pc")}


class KroState(NamedTuple):
    """gammas: I arrays (N_i,) real (before pruning); noise_var: () real; iteration; converged."""

    gammas: tuple
    noise_var: jax.Array
    iteration: jax.Array
    converged: jax.Array


class KroEngine:
    """The EM loop shared by the Kronecker methods (`KroSBL`, `pc.PCKroSBL`); data are (y, factors).

    A mixin: a method is `class MyKro(KroEngine, flax.struct.PyTreeNode)` with its settings as fields.

    A subclass declares the settings `method` (a row of `METHODS`), `noise_var` (None: learned),
    `prune_abs`, `tol`, `inner_tol`, `inner_max`, `max_iters`, `adjoint`, and implements
    `relative_prune(n_factors)` and `initial_gammas(dims, dtype)`.
    """

    # The settings every subclass declares as fields (plain annotations here: this mixin has none).
    method: str
    noise_var: Any
    prune_abs: float
    tol: float
    inner_tol: float
    inner_max: int
    max_iters: int
    adjoint: Any
    normalise: bool

    @property
    def solution(self) -> tuple:
        """State fields at the fixed point (implicit adjoint): γ_i, and σ² when it is learned."""
        return ("gammas", "noise_var") if self.noise_var is None else ("gammas",)

    def relative_prune(self, n_factors: int) -> tuple:
        raise NotImplementedError

    def initial_gammas(self, dims: Sequence[int], dtype) -> tuple:
        raise NotImplementedError

    def _known_noise(self, y: jax.Array, sc: S.Scales) -> jax.Array:
        """The given σ² in normalised units (divided by s_y²)."""
        rdt = C.real_dtype(y.dtype)
        return jnp.asarray(self.noise_var, rdt) / (sc.y**2).astype(rdt)

    def _sigma2(self, state_noise: jax.Array, y: jax.Array, sc: S.Scales) -> jax.Array:
        return state_noise if self.noise_var is None else self._known_noise(y, sc)

    def _posterior(self, gammas, sigma2, y, factors) -> tuple[tuple, Posterior]:
        gammas = C.prune(gammas, self.relative_prune(len(factors)), self.prune_abs)
        return gammas, ESTEPS[METHODS[self.method][0]](y, factors, gammas, sigma2)

    def em_update(self, gammas: tuple, sigma2: jax.Array, y: jax.Array, factors: tuple) -> tuple:
        """One EM iteration from (γ_i, σ²): prune, E-step, M-step, noise update -> (γ_i, σ²)."""
        gammas, post = self._posterior(gammas, sigma2, y, factors)
        d = post.diag_sigma + jnp.abs(post.mu) ** 2
        new = MSTEPS[METHODS[self.method][1]](self, d, gammas)
        if self.noise_var is None:
            sigma2 = C.em_noise_update(post.resid_sq, post.dof, sigma2, y)
        return tuple(new), sigma2

    def init(self, y: jax.Array, factors: Sequence[jax.Array]) -> KroState:
        """Initial prior (`initial_gammas`) and σ² (the known value, or 0.1 var(y) when learned).

        The state is in normalised units (`_scale`: y / s_y, H_i / s_i), as every method below.
        """
        y, factors, sc = S.normalise(y, tuple(factors), self.normalise)
        rdt = C.real_dtype(y.dtype)
        sigma0 = C.initial_noise_var(y) if self.noise_var is None else self._known_noise(y, sc)
        gammas = self.initial_gammas([f.shape[1] for f in factors], rdt)
        return KroState(gammas, sigma0, jnp.asarray(0, jnp.int32), jnp.asarray(False))

    def step(self, state: KroState, y: jax.Array, factors: Sequence[jax.Array]) -> KroState:
        """One EM iteration (pure; jit / vmap / lax.scan-able); converged when the relative change
        of the full γ = ⊗γ_i is <= tol. Takes the data as given (y, factors) and the state in
        normalised units, exactly as the solve function runs it."""
        y, factors, sc = S.normalise(y, tuple(factors), self.normalise)
        new_g, new_s = self.em_update(state.gammas, self._sigma2(state.noise_var, y, sc), y, tuple(factors))
        change = runner.relative_change(C.full_gamma(new_g), C.full_gamma(state.gammas))
        return KroState(new_g, new_s, state.iteration + 1, change <= self.tol)

    def fixed_point(self, solution: tuple, y: jax.Array, factors: Sequence[jax.Array]) -> tuple:
        """The EM map on `solution` (γ_i[, σ²], normalised units), whose fixed point the converged run is."""
        y, factors, sc = S.normalise(y, tuple(factors), self.normalise)
        gammas, sigma2 = solution if self.noise_var is None else (solution[0], self._known_noise(y, sc))
        new_g, new_s = self.em_update(gammas, sigma2, y, tuple(factors))
        return (new_g, new_s) if self.noise_var is None else (new_g,)

    def estimate(self, state: KroState, y: jax.Array, factors: Sequence[jax.Array]) -> jax.Array:
        """(N,) posterior mean under the state's pruned prior (one E-step), in data units."""
        y, factors, sc = S.normalise(y, tuple(factors), self.normalise)
        mu = self._posterior(state.gammas, self._sigma2(state.noise_var, y, sc), y, factors)[1].mu
        return mu * sc.x.astype(mu.dtype)

    def result(self, state: KroState, y: jax.Array, factors: Sequence[jax.Array],
               info: runner.RunInfo | None = None) -> C.SBLResult:
        """SBLResult of a final state: the posterior mean under the pruned, learned prior (data units)."""
        info = runner.info_from_state(state) if info is None else info
        y, factors, sc = S.normalise(y, tuple(factors), self.normalise)
        sigma2 = self._sigma2(state.noise_var, y, sc)
        gammas, post = self._posterior(state.gammas, sigma2, y, factors)
        x = post.mu * sc.x.astype(post.mu.dtype)
        return C.SBLResult(x, S.scale_gammas(gammas, sc), sigma2 * sc.y**2, info.iterations, info.converged,
                           info.trace)
