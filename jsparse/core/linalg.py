"""Small dense decompositions that are safe to vmap on CPU and differentiable where it matters.

Why: on jaxlib 0.10.x CPU, a vmapped (batched) LAPACK `syevd`/`gesdd` runs its batch on the
shared intra-op thread pool and can deadlock (docs/troubleshooting.md), even with the scheduler
flag set. On the CPU backend these functions therefore map a batch one matrix at a time
(`jax.custom_batching.sequential_vmap`: a loop of unbatched LAPACK calls); on GPU/TPU they use
the native batched kernels. `sequential_vmap` has no reverse-mode rule, so `eigh` and
`spectral_norm` carry their own JVPs (which transpose for reverse mode).

* `eigh(a)`: (w ascending, v) with a = v diag(w) v^H. The JVP drops the terms of (near-)equal
  eigenvalue pairs, whose ratio dw/gap is undefined: spectral functions (what SBL uses) are
  unaffected, and pruned, rank-deficient matrices no longer produce inf/NaN gradients.
* `spectral_norm(a)`: largest singular value; d sigma = Re(u^H da v).
* `svd(a)`: (u, s, vh) thin SVD, not differentiable (for metrics).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import custom_batching

__all__ = ["HIGHEST", "eigh", "spectral_norm", "svd"]

# The one precision constant of the package: matmuls that feed a covariance, a Cholesky or an
# eigendecomposition use it, so accelerators do not silently drop to TF32/bf16 passes.
HIGHEST = jax.lax.Precision.HIGHEST


def _sequential_on_cpu(fn):
    sequential = custom_batching.sequential_vmap(fn)

    @functools.wraps(fn)
    def wrapped(a):
        return sequential(a) if jax.default_backend() == "cpu" else fn(a)

    return wrapped


@_sequential_on_cpu
def _eigh(a):
    w, v = jnp.linalg.eigh(a)
    return w, v


@_sequential_on_cpu
def _svd(a):
    u, s, vh = jnp.linalg.svd(a, full_matrices=False)
    return u, s, vh


@jax.custom_jvp
def eigh(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigendecomposition of a Hermitian (..., n, n) matrix: w (..., n) ascending, v (..., n, n)."""
    return _eigh(a)


@eigh.defjvp
def _eigh_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    w, v = _eigh(a)
    vh = jnp.conj(jnp.swapaxes(v, -1, -2))
    dav = jnp.matmul(vh, jnp.matmul(da, v, precision=HIGHEST), precision=HIGHEST)
    gap = w[..., None, :] - w[..., :, None]  # gap[i, j] = w_j - w_i
    scale = jnp.max(jnp.abs(w), axis=-1, keepdims=True)[..., None]
    thresh = 1e3 * jnp.finfo(w.dtype).eps * jnp.maximum(scale, jnp.finfo(w.dtype).tiny)
    ok = jnp.abs(gap) > thresh
    f = jnp.where(ok, 1.0 / jnp.where(ok, gap, 1.0), 0.0).astype(w.dtype)
    dw = jnp.real(jnp.diagonal(dav, axis1=-2, axis2=-1))
    dv = jnp.matmul(v, f.astype(dav.dtype) * dav, precision=HIGHEST)
    return (w, v), (dw.astype(w.dtype), dv)


@jax.custom_jvp
def spectral_norm(a: jax.Array) -> jax.Array:
    """Largest singular value of a (M, N) matrix (real scalar)."""
    return _svd(a)[1][0]


@spectral_norm.defjvp
def _spectral_norm_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    u, s, vh = _svd(a)
    u1, v1 = u[:, 0], jnp.conj(vh[0])
    dsigma = jnp.real(jnp.vdot(u1, jnp.matmul(da, v1, precision=HIGHEST)))
    return s[0], dsigma.astype(s.dtype)


def svd(a: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Thin SVD (u, s, vh) of a (..., M, N) matrix; not differentiable (use for metrics)."""
    return _svd(jax.lax.stop_gradient(a))
