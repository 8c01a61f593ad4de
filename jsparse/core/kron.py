"""Kronecker-structured products without forming the Kronecker matrix.

Convention (everywhere in jsparse): for factors H_1 (M_1 x N_1), ..., H_K (M_K x N_K) and a
vector x of length N = prod(N_k), the *last factor varies fastest*:

    kron_matvec(factors, x) == jnp.kron(H_1, jnp.kron(H_2, ... H_K)) @ x

x is reshaped (row-major) to a tensor X of shape (N_1, ..., N_K) and each factor acts on its
own mode: Y = X x_1 H_1 x_2 H_2 ... x_K H_K. Cost O(N * sum_k M_k) instead of O(M N).
Trailing batch dimensions are supported: x of shape (N, *batch).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jsparse.core.linalg import HIGHEST as _HIGHEST

__all__ = [
    "mode_product",
    "kron_matvec",
    "kron_rmatvec",
    "kron_dense",
    "kron_shape",
    "kron_diag_gram",
]



def mode_product(tensor: jax.Array, matrix: jax.Array, mode: int) -> jax.Array:
    """Mode-`mode` product: contract `tensor`'s axis `mode` with `matrix`'s columns.

    Args:
      tensor: (..., N_mode, ...) array.
      matrix: (M, N_mode) array.
      mode: axis of `tensor` to contract.

    Returns:
      tensor of the same rank with axis `mode` of length M.
    """
    out = jnp.tensordot(matrix, tensor, axes=((1,), (mode,)), precision=_HIGHEST)
    return jnp.moveaxis(out, 0, mode)


def kron_shape(factors: Sequence[jax.Array]) -> tuple[int, int]:
    """(prod M_k, prod N_k) of the implied Kronecker matrix."""
    m = n = 1
    for f in factors:
        m *= f.shape[0]
        n *= f.shape[1]
    return m, n


def _apply(mats: Sequence[jax.Array], x: jax.Array, in_dims: Sequence[int]) -> jax.Array:
    batch = x.shape[1:]
    # One working dtype (real factors with a complex x, float32 with float64), promoted explicitly.
    dtype = np.result_type(x.dtype, *(m.dtype for m in mats))
    tensor = x.astype(dtype).reshape(tuple(in_dims) + batch)
    for mode, mat in enumerate(mats):
        tensor = mode_product(tensor, mat.astype(dtype), mode)
    out_rows = 1
    for mat in mats:
        out_rows *= mat.shape[0]
    return tensor.reshape((out_rows,) + batch)


def kron_matvec(factors: Sequence[jax.Array], x: jax.Array) -> jax.Array:
    """(H_1 ⊗ ... ⊗ H_K) @ x for x of shape (N,) or (N, *batch)."""
    return _apply(factors, x, [f.shape[1] for f in factors])


def kron_rmatvec(factors: Sequence[jax.Array], y: jax.Array) -> jax.Array:
    """Adjoint product (H_1 ⊗ ... ⊗ H_K)^H @ y (conjugate transpose) for y of shape (M,) or (M, *batch)."""
    adjoints = [jnp.conj(f).T for f in factors]
    return _apply(adjoints, y, [f.shape[0] for f in factors])


def kron_dense(factors: Sequence[jax.Array]) -> jax.Array:
    """The dense Kronecker matrix (for tests and tiny problems only)."""
    out = factors[0]
    for f in factors[1:]:
        out = jnp.kron(out, f)
    return out


def kron_diag_gram(factors: Sequence[jax.Array]) -> jax.Array:
    """diag(H^H H) for H = ⊗_k H_k, as a length-N real vector (column norms squared)."""
    norms = [jnp.sum(jnp.abs(f) ** 2, axis=0) for f in factors]
    out = norms[0]
    for d in norms[1:]:
        out = jnp.outer(out, d).reshape(-1)
    return out
