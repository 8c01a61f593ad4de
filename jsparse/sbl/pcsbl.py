"""PC-SBL (Fang et al., TSP 2015, as modified in the IRS reference code) and cSBL on a Kronecker dictionary.

**PC-SBL** (`PCSBL`, `pc_sbl`): 1-D neighbour coupling on the vectorised x, ignoring the Kronecker
structure. Gamma hyperprior (a, b) on precisions α; E_n = |μ_n|² + Σ_nn + η(|μ_{n±1}|² + Σ_{n±1,n±1});
α_n = (a + ½)/(½E_n + b); α_n > prune · min α is set to 1e10; the prior precision is
α_n + η(α_{n−1} + α_{n+1}) (zero padded). Stop when the relative change of μ is <= tol. With a
tuple of Kronecker factors as the dictionary the E-step never forms the M x N matrix
(`kron_dense_posterior`, O(M³ + N Σ M_i²)).

**cSBL** (`csbl_kron`): classic EM-SBL (`classic.SBL`) on the factors of a Kronecker dictionary.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import struct

from jsparse.core import runner
from jsparse.core import validation as V
from jsparse.sbl import _common as C
from jsparse.sbl import _scale as S
from jsparse.sbl._estep import kron_dense_posterior
from jsparse.sbl.classic import columns, dense_posterior, sbl

__all__ = ["PCSBL", "PCSBLState", "pc_sbl", "csbl_kron"]


class PCSBLState(NamedTuple):
    """mu: (N,) posterior mean; var: (N,) real diag Σ; noise_var: () real; iteration; converged."""

    mu: jax.Array
    var: jax.Array
    noise_var: jax.Array
    iteration: jax.Array
    converged: jax.Array


def _shift_sum(v: jax.Array, eta) -> jax.Array:
    """v_n + η (v_{n+1} + v_{n−1}), zero padded at both ends."""
    z = jnp.zeros((1,), v.dtype)
    return v + eta * (jnp.concatenate([v[1:], z]) + jnp.concatenate([z, v[:-1]]))


def _posterior(y, H, v, sigma2):
    if isinstance(H, (tuple, list)):
        return kron_dense_posterior(y, H, v, sigma2)
    return dense_posterior(y, H, v, sigma2)


class PCSBL(struct.PyTreeNode):
    """PC-SBL as a solver object; data are (y (M,), H): a dense (M, N) H or a tuple of Kronecker factors.

    Attributes:
      beta: neighbour coupling η in [0, 1) (static, as the reference's constant). noise_var: known σ²
        (a pytree leaf) or None.
      a, b: Gamma hyperprior (static). prune: precisions above prune · min α become 1e10.
      tol, max_iters: stop on the relative change of μ (static). adjoint: "none" only.
      normalise: solve in normalised units and map back (`_scale`; static, default False).
    """

    beta: float = struct.field(pytree_node=False, default=0.9)
    noise_var: Any = None
    a: float = struct.field(pytree_node=False, default=0.5)
    b: float = struct.field(pytree_node=False, default=1e-4)
    prune: float = struct.field(pytree_node=False, default=1e3)
    tol: float = struct.field(pytree_node=False, default=1e-4)
    max_iters: int = struct.field(pytree_node=False, default=150)
    adjoint: Any = struct.field(pytree_node=False, default="none")
    normalise: bool = struct.field(pytree_node=False, default=False)

    def _known_noise(self, y: jax.Array, sc: S.Scales) -> jax.Array:
        """The given σ² in normalised units (divided by s_y²)."""
        rdt = C.real_dtype(y.dtype)
        return jnp.asarray(self.noise_var, rdt) / (sc.y**2).astype(rdt)

    def _sigma2(self, state_noise: jax.Array, y: jax.Array, sc: S.Scales) -> jax.Array:
        return state_noise if self.noise_var is None else self._known_noise(y, sc)

    def _energy(self, state: PCSBLState) -> jax.Array:
        return _shift_sum(jnp.abs(state.mu) ** 2, self.beta) + _shift_sum(state.var, self.beta)

    def init(self, y: jax.Array, H: jax.Array | Sequence[jax.Array]) -> PCSBLState:
        """The reference start: the posterior under unit prior precision (no coupling; normalised units)."""
        y, H, sc = S.normalise(y, H, self.normalise)
        rdt = C.real_dtype(y.dtype)
        n = columns(H)
        sigma0 = C.initial_noise_var(y) if self.noise_var is None else self._known_noise(y, sc)
        mu0, var0, _, _ = _posterior(y, H, jnp.ones((n,), rdt), sigma0)
        return PCSBLState(mu0, var0, sigma0, jnp.asarray(0, jnp.int32), jnp.asarray(False))

    def step(self, state: PCSBLState, y: jax.Array, H: jax.Array | Sequence[jax.Array]) -> PCSBLState:
        """One PC-SBL iteration (pure; jit / vmap / lax.scan-able); data as given, state in normalised units."""
        y, H, sc = S.normalise(y, H, self.normalise)
        sigma2 = self._sigma2(state.noise_var, y, sc)
        alpha = (self.a + 0.5) / (0.5 * self._energy(state) + self.b)
        alpha = jnp.where(alpha > self.prune * jnp.min(alpha), 1e10, alpha)
        v = 1.0 / _shift_sum(alpha, self.beta)
        mu, var, resid_sq, dof = _posterior(y, H, v, sigma2)
        if self.noise_var is None:
            sigma2 = C.em_noise_update(resid_sq, dof, sigma2, y)
        change = runner.relative_change(mu, state.mu)
        return PCSBLState(mu, var, sigma2, state.iteration + 1, change <= self.tol)

    def estimate(self, state: PCSBLState, y: jax.Array, H: Any) -> jax.Array:
        """(N,) the state's posterior mean μ in data units."""
        return state.mu * S.normalise(y, H, self.normalise)[2].x.astype(state.mu.dtype)

    def result(self, state: PCSBLState, y: jax.Array, H: Any, info: runner.RunInfo | None = None) -> C.SBLResult:
        """SBLResult(x = μ, gammas = (1/α,) before coupling, noise_var, iterations, converged, trace), data units."""
        info = runner.info_from_state(state) if info is None else info
        y, H, sc = S.normalise(y, H, self.normalise)
        gamma = (0.5 * self._energy(state) + self.b) / (self.a + 0.5)
        sigma2 = self._sigma2(state.noise_var, y, sc)
        x = state.mu * sc.x.astype(state.mu.dtype)
        return C.SBLResult(x, S.scale_gammas((gamma.astype(sigma2.dtype),), sc), sigma2 * sc.y**2, info.iterations,
                           info.converged, info.trace)


def pc_sbl(
    y: jax.Array,
    H: jax.Array | Sequence[jax.Array],
    *,
    beta: float = 0.9,
    noise_var: float | jax.Array | None = None,
    a: float = 0.5,
    b: float = 1e-4,
    prune: float = 1e3,
    max_iters: int = 150,
    tol: float = 1e-4,
    trace_fn=None,
    normalise: bool = False,
) -> C.SBLResult:
    """Pattern-coupled SBL (PC-SBL) on the vectorised problem: validate, build a `PCSBL`, run it.

    Args:
      y: (M,) measurements, real or complex.
      H: a dense (M, N) dictionary, or a list/tuple of Kronecker factors (M_i, N_i) (same model,
        structured E-step; x ordered with the last factor fastest).
      beta: neighbour coupling η in [0, 1) (reference 0.9).
      noise_var: known σ² > 0, or None to learn it by EM from 0.1 var(y).
      a, b: Gamma hyperprior parameters (reference 0.5, 1e-4).
      prune: precisions above prune · min α are set to 1e10 (reference 1e3).
      max_iters, tol: stop when ||μ_t − μ_{t−1}|| / ||μ_{t−1}|| <= tol or after max_iters.
      trace_fn: optional `(state, y, H) -> scalar` recorded after every iteration.
      normalise: solve on normalised data (y / s_y, H_i / s_i with power-of-two scales, `_scale`) and map
        x, γ, σ² back, so that the result is scale-equivariant by construction: use it for data far from
        unit scale (the default False runs the reference algorithm on the data as given).

    Returns:
      SBLResult(x = μ (N,), gammas = (1/α,) (N,) prior variances before coupling, noise_var,
      iterations, converged, trace). Not differentiable through the loop (adjoint "none" only).
    """
    kron = isinstance(H, (list, tuple))
    y, dictionary = C.check_y_factors(y, H) if kron else C.check_y_dict(y, H)
    C.check_scalars(beta=beta, a=a, b=b, prune=prune)
    V.check_in_range(beta, "beta", 0.0, 1.0, high_inclusive=False)
    C.check_noise_var(noise_var)
    V.check_positive(a, "a", allow_zero=True)
    V.check_positive(b, "b")
    V.check_positive(prune, "prune")
    rdt = C.real_dtype(y.dtype)
    solver = PCSBL(float(beta), None if noise_var is None else jnp.asarray(noise_var, rdt), float(a),
                   float(b), float(prune), C.check_tol(tol), V.check_int(max_iters, "max_iters", minimum=1),
                   normalise=C.check_flag(normalise, "normalise"))
    return C.run_solver(solver, (y, dictionary), None, trace_fn)


def csbl_kron(
    y: jax.Array,
    factors: Sequence[jax.Array],
    *,
    noise_var: float | jax.Array,
    prune: float = 1e-4,
    max_iters: int = 150,
    tol: float = 1e-4,
    normalise: bool = False,
) -> C.SBLResult:
    """Classic EM-SBL ("cSBL") for a Kronecker dictionary with a non-Kronecker prior diag(γ).

    The same iterates as `jsparse.sbl.sbl(y, kron_dense(factors), noise_var=..., prune=...)` (prune
    γ_n < prune · max γ, E-step, γ ← diag Σ + |μ|², stop on the relative change of γ), but the
    E-step is `kron_dense_posterior`: O(M³ + N Σ M_i²) per iteration instead of O(M² N), and no
    M x N matrix. Known noise variance only (the IRS experiment). Reference prune: 1e-4.
    """
    C.check_scalars(noise_var=noise_var)
    V.check_positive(noise_var, "noise_var")  # known noise only (sbl() would learn it from None)
    return sbl(y, tuple(factors), noise_var=noise_var, prune=prune, max_iters=max_iters, tol=tol, normalise=normalise)
