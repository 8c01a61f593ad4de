"""SAE model: forward pass by hand, TopK/BatchTopK support sizes, JumpReLU STE gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jsparse.sae.model import SAE, jumprelu, step_fn, topk_mask


def _model(activation="adaptive", **kw):
    return SAE(6, 10, activation=activation, rngs=nnx.Rngs(params=jax.random.PRNGKey(0)), **kw)


def test_tied_forward_matches_formula():
    m = _model(scale_init=0.7)
    rng = np.random.default_rng(1)
    m.bias[...] = jnp.asarray(-rng.uniform(0, 0.5, 10), jnp.float32)
    m.b_pre[...] = jnp.asarray(rng.normal(size=6) * 0.1, jnp.float32)
    m.input_scale[...] = jnp.float32(0.5)
    x = rng.normal(size=(4, 6)).astype(np.float32)
    w, a, b, bp = (np.asarray(v, np.float64) for v in (m.w_enc[...], m.scale[...], m.bias[...], m.b_pre[...]))
    u = (0.5 * x - bp) @ w.T
    codes = u * ((u + b) > 0)
    want = ((codes * a) @ w + bp) / 0.5
    np.testing.assert_allclose(np.asarray(m(jnp.asarray(x))), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(m.encode(jnp.asarray(x))), codes, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(m.encode(jnp.asarray(x))) >= 0)


def test_row_normalisation_and_untied_copy():
    m = _model("relu", tied=False)
    m.w_dec[...] = 3.0 * m.w_dec[...]
    m.normalize_rows()
    np.testing.assert_allclose(np.linalg.norm(np.asarray(m.w_dec[...]), axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(m.w_enc[...]), axis=1), 1.0, rtol=1e-6)


def test_topk_exactly_k_largest():
    m = _model("topk", k=3, tied=False)
    m.b_enc[...] = jnp.full((10,), 10.0)  # every pre-activation positive
    x = jax.random.normal(jax.random.PRNGKey(2), (5, 6), jnp.float32)  # the model's dtype
    codes = np.asarray(m.encode(x))
    z = np.asarray(m.pre_activations(x))
    assert np.all((codes > 0).sum(1) == 3)
    for row_c, row_z in zip(codes, z):
        np.testing.assert_array_equal(np.sort(np.nonzero(row_c)[0]), np.sort(np.argsort(-row_z)[:3]))
        np.testing.assert_allclose(row_c[row_c > 0], row_z[row_c > 0])
    assert topk_mask(jnp.zeros((2, 4)), 2).sum() == 4  # ties still give exactly k


def test_batchtopk_keeps_k_times_batch():
    m = _model("batchtopk", k=2, tied=False)
    m.b_enc[...] = jnp.full((10,), 10.0)
    x = jax.random.normal(jax.random.PRNGKey(3), (7, 6), jnp.float32)  # the model's dtype
    codes = np.asarray(m.encode(x, train=True))
    z = np.asarray(m.pre_activations(x))
    assert (codes > 0).sum() == 2 * 7
    assert codes[codes > 0].min() >= np.sort(z.ravel())[-14]
    m.threshold[...] = jnp.float32(10.0)  # inference: global threshold
    inf = np.asarray(m.encode(x))
    np.testing.assert_array_equal(inf > 0, z > 10.0)


def test_jumprelu_ste_gradients_by_hand(x64):
    z = jnp.array([[0.2, 0.5, 0.51, 0.9], [0.48, 0.1, 0.55, 0.3]])
    theta = jnp.array([[0.5, 0.5, 0.5, 0.5]])
    eps = 0.1
    g = jnp.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    fz, ft = jax.grad(lambda z_, t_: jnp.sum(g * jumprelu(z_, t_, eps)), argnums=(0, 1))(z, theta)
    np.testing.assert_allclose(np.asarray(fz), np.asarray(g * (z > theta).astype(g.dtype)))
    rect = (np.abs((np.asarray(z) - 0.5) / eps) < 0.5).astype(float)
    want_t = -(0.5 / eps) * (rect * np.asarray(g)).sum(0, keepdims=True)
    np.testing.assert_allclose(np.asarray(ft), want_t)
    sz, st = jax.grad(lambda z_, t_: jnp.sum(g * step_fn(z_, t_, eps)), argnums=(0, 1))(z, theta)
    np.testing.assert_array_equal(np.asarray(sz), 0.0)
    np.testing.assert_allclose(np.asarray(st), -(1 / eps) * (rect * np.asarray(g)).sum(0, keepdims=True))
    # the theta-gradient is the finite difference of the rectangle-smoothed forward, in the limit:
    # E_rect[z H(z - theta)] with theta far from every z is locally flat -> zero gradient there
    _, far = jax.grad(lambda z_, t_: jnp.sum(jumprelu(z_, t_, eps)), argnums=(0, 1))(z, theta + 5)
    np.testing.assert_array_equal(np.asarray(far), 0.0)


def test_tied_gradient_matches_finite_differences(x64):
    m = SAE(5, 7, activation="adaptive", rngs=nnx.Rngs(params=jax.random.PRNGKey(4)), dtype=jnp.float64)
    m.bias[...] = -0.1 * jnp.ones(7, jnp.float64)
    graphdef, params, rest = nnx.split(m, nnx.Param, ...)
    x = jax.random.normal(jax.random.PRNGKey(5), (9, 5), jnp.float64)

    def loss(p):
        mm = nnx.merge(graphdef, p, rest)
        return 0.5 * jnp.sum((mm(x) - x) ** 2)

    g = jax.grad(loss)(params)
    w = params["w_enc"][...]
    direction = jax.random.normal(jax.random.PRNGKey(6), w.shape, jnp.float64)
    h = 1e-6

    def shifted(t):
        p2 = jax.tree_util.tree_map(lambda a: a, params)
        p2["w_enc"][...] = w + t * direction
        return loss(p2)

    fd = (shifted(h) - shifted(-h)) / (2 * h)
    assert float(jnp.sum(g["w_enc"][...] * direction)) == pytest.approx(float(fd), rel=1e-6)


def test_bad_model_args():
    with pytest.raises(ValueError, match="width"):
        SAE(4, 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="k"):
        SAE(4, 8, activation="topk", k=9, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="activation"):
        SAE(4, 8, activation="gelu", rngs=nnx.Rngs(0))


def test_kth_largest_matches_sort():
    from jsparse.sae.model import kth_largest

    r = jax.nn.relu(jax.random.normal(jax.random.PRNGKey(7), (33, 17)))
    srt = np.sort(np.asarray(r).ravel())[::-1]
    for k in (1, 5, 100, 561):
        assert float(kth_largest(r, k)) == srt[k - 1]


def test_batch_kth_equals_the_full_count_with_and_without_fallback():
    from jsparse.sae.model import batch_kth, kth_largest

    r = jax.nn.relu(jax.random.normal(jax.random.PRNGKey(8), (8, 40)))
    f = jax.jit(lambda r_: (batch_kth(r_, 24, 6), kth_largest(r_, 24)))
    got, want = f(r)
    assert float(got) == float(want)
    # row 0 holds the 40 largest values: its 6 candidates cannot contain the 24th, the full count decides
    got, want = f(r.at[0].set(10.0 + jnp.arange(40, dtype=r.dtype)))
    assert float(got) == float(want) == 26.0
