"""Mode-product Kronecker products against dense jnp.kron, for 2, 3 and 4 factors, real and complex."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsparse.core import kron

SHAPES = {
    2: [(3, 4), (5, 2)],
    3: [(2, 3), (4, 2), (3, 3)],
    4: [(2, 2), (3, 2), (2, 3), (2, 2)],
}


def make(count, complex_, seed=0):
    rng = np.random.default_rng(seed)
    factors = []
    for m, n in SHAPES[count]:
        f = rng.standard_normal((m, n))
        if complex_:
            f = f + 1j * rng.standard_normal((m, n))
        factors.append(jnp.asarray(f))
    return factors, rng


@pytest.mark.parametrize("count", [2, 3, 4])
@pytest.mark.parametrize("complex_", [False, True])
def test_matvec_and_adjoint_match_dense(count, complex_, x64):
    factors, rng = make(count, complex_)
    dense = np.asarray(kron.kron_dense(factors))
    ref = factors[0]
    for f in factors[1:]:
        ref = np.kron(ref, f)
    np.testing.assert_allclose(dense, ref)
    m, n = kron.kron_shape(factors)
    assert dense.shape == (m, n)
    x = rng.standard_normal(n) + (1j * rng.standard_normal(n) if complex_ else 0)
    y = rng.standard_normal(m) + (1j * rng.standard_normal(m) if complex_ else 0)
    np.testing.assert_allclose(kron.kron_matvec(factors, jnp.asarray(x)), dense @ x, rtol=1e-12)
    np.testing.assert_allclose(kron.kron_rmatvec(factors, jnp.asarray(y)), dense.conj().T @ y, rtol=1e-12)
    # batched columns
    X = rng.standard_normal((n, 3))
    np.testing.assert_allclose(kron.kron_matvec(factors, jnp.asarray(X)), dense @ X, rtol=1e-12)
    np.testing.assert_allclose(kron.kron_diag_gram(factors), np.sum(np.abs(dense) ** 2, axis=0), rtol=1e-12)


def test_float32_matches_dense_within_precision():
    factors, rng = make(3, False)
    factors = [f.astype(jnp.float32) for f in factors]
    x = jnp.asarray(rng.standard_normal(kron.kron_shape(factors)[1]), jnp.float32)
    out = kron.kron_matvec(factors, x)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, np.asarray(kron.kron_dense(factors)) @ np.asarray(x), rtol=1e-5, atol=1e-5)


def test_mode_product_is_jittable_and_differentiable(x64):
    factors, rng = make(3, False)
    x = jnp.asarray(rng.standard_normal(kron.kron_shape(factors)[1]))
    f = jax.jit(lambda fs, v: jnp.sum(kron.kron_matvec(fs, v) ** 2))
    g = jax.grad(f, argnums=1)(factors, x)
    dense = kron.kron_dense(factors)
    np.testing.assert_allclose(g, 2 * dense.T @ (dense @ x), rtol=1e-10)
