"""CPU-safe decompositions: values match NumPy, gradients match closed forms / finite differences."""
import re

import jax
import jax.numpy as jnp
import numpy as np

from jsparse.core import linalg


def test_eigh_batched_values_and_gradient(x64):
    A = jax.random.normal(jax.random.PRNGKey(0), (5, 4, 4))
    S = A + jnp.swapaxes(A, 1, 2)
    w, v = jax.vmap(linalg.eigh)(S)
    np.testing.assert_allclose(w, np.linalg.eigh(np.asarray(S))[0], atol=1e-10)
    np.testing.assert_allclose(v @ (w[..., None] * jnp.swapaxes(v, 1, 2)), S, atol=1e-10)
    # d/dS sum(w^2) = d/dS ||S||_F^2 = 2 S
    grad = jax.grad(lambda S: jnp.sum(jax.vmap(lambda s: jnp.sum(linalg.eigh(s)[0] ** 2))(S)))(S)
    np.testing.assert_allclose(grad, 2 * S, atol=1e-9)
    # the vmapped CPU path is a loop of unbatched eigh calls (no batched LAPACK)
    if jax.default_backend() == "cpu":
        hlo = jax.jit(jax.vmap(linalg.eigh)).lower(S).as_text()
        assert "while" in hlo
        assert re.search(r"@eigh[\w.]*\(.*\) : \(tensor<4x4xf64>", hlo), "eigh is not called per matrix"


def test_eigh_gradient_finite_on_rank_deficient_matrix(x64):
    S = jnp.diag(jnp.asarray([0.0, 0.0, 2.0, 5.0]))  # repeated (pruned) zero eigenvalues
    g = jax.grad(lambda s: jnp.sum(jnp.log1p(linalg.eigh(s)[0])))(S)
    assert np.all(np.isfinite(np.asarray(g)))


def test_spectral_norm_real_complex_and_gradient(x64):
    A = jax.random.normal(jax.random.PRNGKey(1), (5, 6, 4))
    np.testing.assert_allclose(jax.vmap(linalg.spectral_norm)(A), [np.linalg.norm(np.asarray(a), 2) for a in A])
    C = jax.lax.complex(jax.random.normal(jax.random.PRNGKey(2), (3, 5)),
                        jax.random.normal(jax.random.PRNGKey(3), (3, 5)))
    np.testing.assert_allclose(linalg.spectral_norm(C), np.linalg.norm(np.asarray(C), 2))
    d = jax.random.normal(jax.random.PRNGKey(4), (6, 4))
    g = jax.grad(linalg.spectral_norm)(A[0])
    eps = 1e-6
    fd = (linalg.spectral_norm(A[0] + eps * d) - linalg.spectral_norm(A[0] - eps * d)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(g, d), fd, rtol=1e-6)
    batched = jax.grad(lambda A: jnp.sum(jax.vmap(linalg.spectral_norm)(A)))(A)
    np.testing.assert_allclose(batched[0], g, rtol=1e-10)


def test_svd_reconstructs():
    A = jax.random.normal(jax.random.PRNGKey(5), (3, 4, 2))
    u, s, vh = jax.vmap(linalg.svd)(A)
    np.testing.assert_allclose((u * s[:, None, :]) @ vh, A, atol=1e-5)
