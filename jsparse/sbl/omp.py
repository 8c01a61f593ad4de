"""Greedy baselines: OMP, N-way (Kronecker) OMP, and oracle least squares.

* `omp`: orthogonal matching pursuit on a dense H (M, N): pick argmax_n |h_n^H r| / ||h_n||,
  refit least squares on the selected columns, stop when ||r|| <= tol ||y|| or `max_atoms` atoms.
* `kron_omp`: the N-way OMP of Caiafa & Cichocki (2013) for H = H_1 ⊗ ... ⊗ H_I: pick the
  Kronecker atom (n_1, ..., n_I) with the largest normalised correlation, add n_i to each mode's
  index set S_i, and refit on the Kronecker support S_1 × ... × S_I with
  x = (⊗ pinv(H_i[:, S_i])) y (the least-squares solution, since pinv(A ⊗ B) = pinv A ⊗ pinv B).
  Stop when ||r|| <= tol ||y||, when no mode gains a new index, or when a mode would exceed
  max_atoms[i] (reference: 10 per mode, tol 1e-2).
* `oracle_ls`: least squares on a given support (per-factor masks for Kronecker factors, or an
  (N,) mask for a dense H).
Fixed shapes throughout: index sets are boolean masks (or padded index arrays) and pruned
columns are zeroed, so everything jits and vmaps. Not differentiable through the selection.
"""
from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jsparse.core import runner
from jsparse.core import validation as V
from jsparse.core.kron import kron_matvec, kron_rmatvec
from jsparse.sbl import _common as C
from jsparse.sbl import _scale as S

__all__ = ["OMP", "KronOMP", "omp", "kron_omp", "oracle_ls", "OMPResult"]


class OMPResult(NamedTuple):
    """x (N,); support: (N,) bool (dense) or I tuple of (N_i,) bool (Kronecker);
    noise_var: ||r||²/M of the final residual; iterations; converged (a stopping rule fired)."""

    x: jax.Array
    support: jax.Array | tuple
    noise_var: jax.Array
    iterations: jax.Array
    converged: jax.Array


def _masked_lstsq(a: jax.Array, valid: jax.Array, y: jax.Array) -> jax.Array:
    """Least squares on the columns of a (M, K) flagged by valid (K,); others get 0."""
    a = a * valid.astype(a.dtype)[None, :]
    gram = jnp.matmul(jnp.conj(a).T, a, precision=C.HIGHEST)
    gram = gram + jnp.diag((~valid).astype(a.dtype))
    coef = jnp.linalg.solve(gram, jnp.matmul(jnp.conj(a).T, y, precision=C.HIGHEST))
    return jnp.where(valid, coef, 0)


# ----------------------------------------------------------------------------- dense OMP
class OmpState(NamedTuple):
    """idx: (max_atoms,) int32 selected columns (padded with 0); count; x (N,); resid (M,);
    colnorm: (N,) real column norms of H (floored); iteration; converged."""

    idx: jax.Array
    count: jax.Array
    x: jax.Array
    resid: jax.Array
    colnorm: jax.Array
    iteration: jax.Array
    converged: jax.Array


class OMP(struct.PyTreeNode):
    """Orthogonal matching pursuit as a solver object; data are (y (M,), H (M, N)).

    Attributes (static): max_atoms (also the iteration budget), tol (relative residual), normalise
    (solve in normalised units and map back, `_scale`; default False).
    """

    max_atoms: int = struct.field(pytree_node=False, default=10)
    tol: float = struct.field(pytree_node=False, default=1e-2)
    adjoint: Any = struct.field(pytree_node=False, default="none")
    normalise: bool = struct.field(pytree_node=False, default=False)

    @property
    def max_iters(self) -> int:
        return self.max_atoms

    def init(self, y: jax.Array, H: jax.Array) -> OmpState:
        """No atom selected; the residual is y (normalised units, see `_scale`)."""
        y, H, _ = S.normalise(y, H, self.normalise)
        colnorm = jnp.maximum(jnp.linalg.norm(H, axis=0), C.tiny(C.real_dtype(y.dtype)))
        zero = jnp.asarray(0, jnp.int32)
        return OmpState(jnp.zeros((self.max_atoms,), jnp.int32), zero, jnp.zeros((H.shape[1],), y.dtype), y, colnorm,
                        zero, jnp.linalg.norm(y) <= 0)

    def step(self, state: OmpState, y: jax.Array, H: jax.Array) -> OmpState:
        """Add the most correlated column and refit least squares (pure; jit / vmap / lax.scan-able).

        Data as given; the state is in normalised units, exactly as `omp` runs it."""
        y, H, _ = S.normalise(y, H, self.normalise)
        corr = jnp.abs(jnp.matmul(jnp.conj(H).T, state.resid, precision=C.HIGHEST)) / state.colnorm
        slots = jnp.arange(self.max_atoms, dtype=jnp.int32)
        taken = jnp.zeros(H.shape[1], bool).at[state.idx].max(slots < state.count)
        j = jnp.argmax(jnp.where(taken, -1.0, corr))
        idx = state.idx.at[state.count].set(j.astype(jnp.int32))
        count = state.count + 1
        coef = _masked_lstsq(H[:, idx], slots < count, y)
        x = jnp.zeros_like(state.x).at[idx].add(coef)
        resid = y - jnp.matmul(H, x, precision=C.HIGHEST)
        done = (jnp.linalg.norm(resid) <= self.tol * jnp.linalg.norm(y)) | (count >= self.max_atoms)
        return OmpState(idx, count, x, resid, state.colnorm, state.iteration + 1, done)

    def result(self, state: OmpState, y: jax.Array, H: jax.Array, info: runner.RunInfo | None = None) -> OMPResult:
        """OMPResult with support the (N,) mask of the selected columns (x, noise_var in data units)."""
        info = runner.info_from_state(state) if info is None else info
        y_n, _, sc = S.normalise(y, H, self.normalise)
        selected = jnp.arange(self.max_atoms, dtype=jnp.int32) < state.count
        support = jnp.zeros(H.shape[1], bool).at[state.idx].max(selected)
        return OMPResult(state.x * sc.x.astype(state.x.dtype), support, _residual_power(state.resid, y_n) * sc.y**2,
                         info.iterations, info.converged)


def _residual_power(resid: jax.Array, y: jax.Array) -> jax.Array:
    return (jnp.sum(jnp.abs(resid) ** 2) / y.shape[0]).astype(C.real_dtype(y.dtype))


def omp(y: jax.Array, H: jax.Array, *, max_atoms: int, tol: float = 1e-2, normalise: bool = False) -> OMPResult:
    """Orthogonal matching pursuit. y (M,), H (M, N); max_atoms <= min(M, N); tol: relative residual;
    normalise: run on normalised data (`_scale`) and map x, noise_var back."""
    y, H = C.check_y_dict(y, H)
    max_atoms = V.check_int(max_atoms, "max_atoms", minimum=1, maximum=min(H.shape))
    return C.run_solver(OMP(max_atoms, C.check_tol(tol), normalise=C.check_flag(normalise, "normalise")), (y, H))


# ----------------------------------------------------------------------------- Kronecker OMP
def _kron_ls(y: jax.Array, factors: Sequence[jax.Array], masks: Sequence[jax.Array]) -> jax.Array:
    pinvs = [jnp.linalg.pinv(h * m.astype(h.dtype)[None, :]) for h, m in zip(factors, masks)]
    return kron_matvec(pinvs, y)


@partial(jax.jit, static_argnames=("normalise",))
def _kron_ls_jit(y: jax.Array, factors: Sequence[jax.Array], masks: Sequence[jax.Array], *,
                 normalise: bool = False) -> jax.Array:
    """`_kron_ls`, on normalised data (`_scale`) mapped back to data units when `normalise`."""
    y_n, f_n, sc = S.normalise(y, tuple(factors), normalise)
    x = _kron_ls(y_n, f_n, masks)
    return x * sc.x.astype(x.dtype)


class KronOmpState(NamedTuple):
    """masks: I tuple of (N_i,) bool index sets; x (N,); resid (M,); normalised: the factors with unit
    columns; iteration; converged."""

    masks: tuple
    x: jax.Array
    resid: jax.Array
    normalised: tuple
    iteration: jax.Array
    converged: jax.Array


class KronOMP(struct.PyTreeNode):
    """N-way OMP (Caiafa & Cichocki 2013) as a solver object; data are (y (M,), factors (I tuple)).

    Attributes (static): max_atoms: per-mode cap on |S_i| (a tuple); tol: relative residual; normalise:
    solve in normalised units and map back (`_scale`; default False).
    The iteration budget is min(∏ max_atoms, Σ max_atoms + 1): each accepted step grows some S_i.
    """

    max_atoms: tuple = struct.field(pytree_node=False, default=(10, 10, 10))
    tol: float = struct.field(pytree_node=False, default=1e-2)
    adjoint: Any = struct.field(pytree_node=False, default="none")
    normalise: bool = struct.field(pytree_node=False, default=False)

    @property
    def max_iters(self) -> int:
        return min(int(np.prod(self.max_atoms)), sum(self.max_atoms) + 1)

    def init(self, y: jax.Array, factors: Sequence[jax.Array]) -> KronOmpState:
        """Empty index sets; the residual is y (normalised units, see `_scale`)."""
        y, factors, _ = S.normalise(y, tuple(factors), self.normalise)
        tiny = C.tiny(C.real_dtype(y.dtype))
        normalised = tuple(h / jnp.maximum(jnp.linalg.norm(h, axis=0), tiny).astype(h.dtype)[None, :] for h in factors)
        n = int(np.prod([h.shape[1] for h in factors]))
        masks = tuple(jnp.zeros((h.shape[1],), bool) for h in factors)
        return KronOmpState(masks, jnp.zeros((n,), y.dtype), y, normalised, jnp.asarray(0, jnp.int32),
                            jnp.linalg.norm(y) <= 0)

    def step(self, state: KronOmpState, y: jax.Array, factors: Sequence[jax.Array]) -> KronOmpState:
        """Add the most correlated Kronecker atom's indices and refit (pure; jit / vmap / lax.scan-able).

        Data as given; the state is in normalised units, exactly as `kron_omp` runs it."""
        y, factors, _ = S.normalise(y, tuple(factors), self.normalise)
        dims = tuple(f.shape[1] for f in factors)
        corr = jnp.abs(kron_rmatvec(state.normalised, state.resid))
        picks = jnp.unravel_index(jnp.argmax(corr), dims)
        new_masks = tuple(m.at[j].set(True) for m, j in zip(state.masks, picks))
        grew = jnp.any(jnp.stack([jnp.sum(n) > jnp.sum(o) for n, o in zip(new_masks, state.masks)]))
        too_many = jnp.any(jnp.stack([jnp.sum(n) > cap for n, cap in zip(new_masks, self.max_atoms)]))
        accept = grew & ~too_many
        masks = tuple(jnp.where(accept, n, o) for n, o in zip(new_masks, state.masks))
        x = jnp.where(accept, _kron_ls(y, factors, masks), state.x)
        resid = y - kron_matvec(factors, x)
        small = jnp.linalg.norm(resid) <= self.tol * jnp.linalg.norm(y)
        return KronOmpState(masks, x, resid, state.normalised, state.iteration + 1, small | ~accept)

    def result(self, state: KronOmpState, y: jax.Array, factors: Sequence[jax.Array],
               info: runner.RunInfo | None = None) -> OMPResult:
        """OMPResult with support the per-mode masks S_i (x, noise_var in data units)."""
        info = runner.info_from_state(state) if info is None else info
        y_n, _, sc = S.normalise(y, tuple(factors), self.normalise)
        return OMPResult(state.x * sc.x.astype(state.x.dtype), state.masks,
                         _residual_power(state.resid, y_n) * sc.y**2, info.iterations, info.converged)


def kron_omp(
    y: jax.Array, factors: Sequence[jax.Array], *, max_atoms: Sequence[int] | int = (10, 10, 10), tol: float = 1e-2,
    normalise: bool = False,
) -> OMPResult:
    """N-way OMP (Caiafa & Cichocki 2013) for y ≈ (H_1 ⊗ ... ⊗ H_I) x: validate, build a `KronOMP`, run it.

    Args:
      y: (prod M_i,); factors: I >= 2 matrices (M_i, N_i) of y's dtype.
      max_atoms: per-mode cap on |S_i| (an int applies to every mode; reference (10, 10, 10)).
      tol: stop when ||r|| <= tol ||y||.
      normalise: run on normalised data (`_scale`) and map x, noise_var back.
    Returns:
      OMPResult with support = per-mode masks S_i; x is zero outside S_1 × ... × S_I.
    """
    y, factors = C.check_y_factors(y, factors)
    caps = tuple(max_atoms) if isinstance(max_atoms, (list, tuple)) else (max_atoms,) * len(factors)
    if len(caps) != len(factors):
        raise ValueError(f"max_atoms: expected {len(factors)} values (one per factor), got {max_atoms!r}")
    caps = tuple(V.check_int(c, "max_atoms", minimum=1) for c in caps)
    return C.run_solver(KronOMP(caps, C.check_tol(tol), normalise=C.check_flag(normalise, "normalise")),
                        (y, tuple(factors)))


# ----------------------------------------------------------------------------- oracle LS
def oracle_ls(y: jax.Array, H, support, *, max_support: int | None = None, normalise: bool = False) -> jax.Array:
    """Least squares restricted to a known support.

    Args:
      y: (M,) measurements.
      H: a dense (M, N) dictionary, or a list/tuple of Kronecker factors (M_i, N_i).
      support: for factors, a tuple of per-factor boolean masks (N_i,) (a Kronecker support);
        for a dense H, an (N,) boolean mask.
      max_support: dense case only: static bound on the support size (default min(M, N)).
      normalise: solve on normalised data and map back (`_scale`; scale-equivariant by construction).
    Returns:
      (N,) estimate, zero outside the support.
    """
    if isinstance(H, (list, tuple)):
        y, factors = C.check_y_factors(y, H)
        if not isinstance(support, (list, tuple)) or len(support) != len(factors):
            raise ValueError(f"support: expected {len(factors)} boolean masks (one per factor)")
        masks = tuple(V.check_array(s, f"support[{i}]", shape=(f.shape[1],)).astype(bool)
                      for i, (s, f) in enumerate(zip(support, factors)))
        return _kron_ls_jit(y, factors, masks, normalise=C.check_flag(normalise, "normalise"))
    y, H = C.check_y_dict(y, H)
    mask = V.check_array(support, "support", shape=(H.shape[1],)).astype(bool)
    size = min(H.shape) if max_support is None else V.check_int(max_support, "max_support", minimum=1)
    return _dense_ls(y, H, mask, size=size, normalise=C.check_flag(normalise, "normalise"))


@partial(jax.jit, static_argnames=("size", "normalise"))
def _dense_ls(y, H, mask, *, size: int, normalise: bool = False) -> jax.Array:
    y, H, sc = S.normalise(y, H, normalise)
    idx = jnp.nonzero(mask, size=size, fill_value=0)[0]
    valid = jnp.arange(size) < jnp.sum(mask)
    coef = _masked_lstsq(H[:, idx], valid, y)
    return jnp.zeros((H.shape[1],), y.dtype).at[idx].add(coef) * sc.x.astype(y.dtype)
