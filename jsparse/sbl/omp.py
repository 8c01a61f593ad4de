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
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jsparse.core import runner
from jsparse.core import validation as V
from jsparse.core.kron import kron_matvec, kron_rmatvec
from jsparse.sbl import _common as C

__all__ = ["omp", "kron_omp", "oracle_ls", "OMPResult"]


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
class _OmpState(NamedTuple):
    idx: jax.Array  # (max_atoms,) int32, padded with 0
    count: jax.Array
    x: jax.Array
    resid: jax.Array
    iteration: jax.Array
    converged: jax.Array


def _omp_step(max_atoms: int, tol: float, state: _OmpState, y, H, colnorm):
    corr = jnp.abs(jnp.matmul(jnp.conj(H).T, state.resid, precision=C.HIGHEST)) / colnorm
    slots = jnp.arange(max_atoms)
    valid_old = slots < state.count
    taken = jnp.zeros(H.shape[1], bool).at[state.idx].max(valid_old)
    j = jnp.argmax(jnp.where(taken, -1.0, corr))
    idx = state.idx.at[state.count].set(j.astype(jnp.int32))
    count = state.count + 1
    valid = slots < count
    coef = _masked_lstsq(H[:, idx], valid, y)
    x = jnp.zeros_like(state.x).at[idx].add(coef)
    resid = y - jnp.matmul(H, x, precision=C.HIGHEST)
    done = (jnp.linalg.norm(resid) <= tol * jnp.linalg.norm(y)) | (count >= max_atoms)
    return _OmpState(idx, count, x, resid, state.iteration + 1, done)


def omp(y: jax.Array, H: jax.Array, *, max_atoms: int, tol: float = 1e-2) -> OMPResult:
    """Orthogonal matching pursuit. y (M,), H (M, N); max_atoms <= min(M, N); tol: relative residual."""
    y, H = C.check_y_dict(y, H)
    max_atoms = V.check_int(max_atoms, "max_atoms", minimum=1, maximum=min(H.shape))
    tol = C.check_tol(tol)
    return _omp_solve(y, H, max_atoms=max_atoms, tol=tol)


@partial(jax.jit, static_argnames=("max_atoms", "tol"))
def _omp_solve(y, H, *, max_atoms: int, tol: float) -> OMPResult:
    rdt = C.real_dtype(y.dtype)
    colnorm = jnp.maximum(jnp.linalg.norm(H, axis=0), C.tiny(rdt))
    state = _OmpState(
        jnp.zeros((max_atoms,), jnp.int32), jnp.asarray(0, jnp.int32), jnp.zeros((H.shape[1],), y.dtype), y,
        jnp.asarray(0, jnp.int32), jnp.linalg.norm(y) <= 0,
    )
    final, info = runner.run(partial(_omp_step, max_atoms, tol), state, (y, H, colnorm), max_iters=max_atoms)
    support = jnp.zeros(H.shape[1], bool).at[final.idx].max(jnp.arange(max_atoms) < final.count)
    noise = (jnp.sum(jnp.abs(final.resid) ** 2) / y.shape[0]).astype(rdt)
    return OMPResult(final.x, support, noise, info.iterations, info.converged)


# ----------------------------------------------------------------------------- Kronecker OMP
def _kron_ls(y: jax.Array, factors: Sequence[jax.Array], masks: Sequence[jax.Array]) -> jax.Array:
    pinvs = [jnp.linalg.pinv(h * m.astype(h.dtype)[None, :]) for h, m in zip(factors, masks)]
    return kron_matvec(pinvs, y)


_kron_ls_jit = jax.jit(_kron_ls)


class _KompState(NamedTuple):
    masks: tuple
    x: jax.Array
    resid: jax.Array
    iteration: jax.Array
    converged: jax.Array


def _komp_step(max_atoms: tuple, tol: float, state: _KompState, y, factors, normalised):
    dims = tuple(f.shape[1] for f in factors)
    corr = jnp.abs(kron_rmatvec(normalised, state.resid))
    picks = jnp.unravel_index(jnp.argmax(corr), dims)
    new_masks = tuple(m.at[j].set(True) for m, j in zip(state.masks, picks))
    grew = jnp.any(jnp.stack([jnp.sum(n) > jnp.sum(o) for n, o in zip(new_masks, state.masks)]))
    too_many = jnp.any(jnp.stack([jnp.sum(n) > cap for n, cap in zip(new_masks, max_atoms)]))
    accept = grew & ~too_many
    masks = tuple(jnp.where(accept, n, o) for n, o in zip(new_masks, state.masks))
    x = _kron_ls(y, factors, masks)
    x = jnp.where(accept, x, state.x)
    resid = y - kron_matvec(factors, x)
    small = jnp.linalg.norm(resid) <= tol * jnp.linalg.norm(y)
    return _KompState(masks, x, resid, state.iteration + 1, small | ~accept)


def kron_omp(
    y: jax.Array, factors: Sequence[jax.Array], *, max_atoms: Sequence[int] | int = (10, 10, 10), tol: float = 1e-2
) -> OMPResult:
    """N-way OMP (Caiafa & Cichocki 2013) for y ≈ (H_1 ⊗ ... ⊗ H_I) x.

    Args:
      y: (prod M_i,); factors: I >= 2 matrices (M_i, N_i) of y's dtype.
      max_atoms: per-mode cap on |S_i| (an int applies to every mode; reference (10, 10, 10)).
      tol: stop when ||r|| <= tol ||y||.
    Returns:
      OMPResult with support = per-mode masks S_i; x is zero outside S_1 × ... × S_I.
    """
    y, factors = C.check_y_factors(y, factors)
    caps = tuple(max_atoms) if isinstance(max_atoms, (list, tuple)) else (max_atoms,) * len(factors)
    if len(caps) != len(factors):
        raise ValueError(f"max_atoms: expected {len(factors)} values (one per factor), got {max_atoms!r}")
    caps = tuple(V.check_int(c, "max_atoms", minimum=1) for c in caps)
    tol = C.check_tol(tol)
    return _kron_omp_solve(y, tuple(factors), caps=caps, tol=tol)


@partial(jax.jit, static_argnames=("caps", "tol"))
def _kron_omp_solve(y, factors, *, caps: tuple, tol: float) -> OMPResult:
    rdt = C.real_dtype(y.dtype)
    normalised = tuple(h / jnp.maximum(jnp.linalg.norm(h, axis=0), C.tiny(rdt))[None, :] for h in factors)
    n = 1
    for h in factors:
        n *= h.shape[1]
    state = _KompState(
        tuple(jnp.zeros((h.shape[1],), bool) for h in factors), jnp.zeros((n,), y.dtype), y,
        jnp.asarray(0, jnp.int32), jnp.linalg.norm(y) <= 0,
    )
    budget = 1
    for c in caps:
        budget *= c
    budget = min(budget, sum(caps) + 1) if len(caps) else 1  # each accepted step grows some |S_i|
    final, info = runner.run(partial(_komp_step, caps, tol), state, (y, factors, normalised), max_iters=budget)
    noise = (jnp.sum(jnp.abs(final.resid) ** 2) / y.shape[0]).astype(rdt)
    return OMPResult(final.x, final.masks, noise, info.iterations, info.converged)


# ----------------------------------------------------------------------------- oracle LS
def oracle_ls(y: jax.Array, H, support, *, max_support: int | None = None) -> jax.Array:
    """Least squares restricted to a known support.

    Args:
      y: (M,) measurements.
      H: a dense (M, N) dictionary, or a list/tuple of Kronecker factors (M_i, N_i).
      support: for factors, a tuple of per-factor boolean masks (N_i,) (a Kronecker support);
        for a dense H, an (N,) boolean mask.
      max_support: dense case only: static bound on the support size (default min(M, N)).
    Returns:
      (N,) estimate, zero outside the support.
    """
    if isinstance(H, (list, tuple)):
        y, factors = C.check_y_factors(y, H)
        if not isinstance(support, (list, tuple)) or len(support) != len(factors):
            raise ValueError(f"support: expected {len(factors)} boolean masks (one per factor)")
        masks = tuple(
            V.check_array(s, f"support[{i}]", shape=(f.shape[1],)).astype(bool) for i, (s, f) in enumerate(zip(support, factors))
        )
        return _kron_ls_jit(y, factors, masks)
    y, H = C.check_y_dict(y, H)
    mask = V.check_array(support, "support", shape=(H.shape[1],)).astype(bool)
    size = min(H.shape) if max_support is None else V.check_int(max_support, "max_support", minimum=1)
    return _dense_ls(y, H, mask, size=size)


@partial(jax.jit, static_argnames=("size",))
def _dense_ls(y, H, mask, *, size: int) -> jax.Array:
    idx = jnp.nonzero(mask, size=size, fill_value=0)[0]
    valid = jnp.arange(size) < jnp.sum(mask)
    coef = _masked_lstsq(H[:, idx], valid, y)
    return jnp.zeros((H.shape[1],), y.dtype).at[idx].add(coef)
