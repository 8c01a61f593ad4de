"""The step's "fast" formulation (kernels.project's pre-bias gradient, TopK's row-by-row decoder)
against the plain one for the dense-code methods, the row kernels against dense products, and the
choice by shape. (TopK / BatchTopK fast vs a dense reference: test_auxk.py.)"""
import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jsparse import sae
from jsparse.sae import kernels, losses

tr = importlib.import_module("jsparse.sae.train")  # the module (jsparse.sae.train is also the function)
D, WIDTH, B = 6, 20, 12


def _grads(method, dtype, formulation):
    method = method.resolve(D, WIDTH)
    model = tr.build(method, D, WIDTH, jax.random.PRNGKey(2), dtype=dtype)
    rng = np.random.default_rng(5)
    model.b_pre[...] = jnp.asarray(rng.normal(size=D) * 0.2, dtype)
    if model.bias is not None:
        model.bias[...] = jnp.asarray(-rng.uniform(0, 0.3, WIDTH), dtype)
    x = jnp.asarray(rng.normal(size=(B, D)), dtype)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    f = jax.jit(jax.value_and_grad(functools.partial(tr._loss, graphdef, method.step_part(), formulation=formulation),
                                   has_aux=True))
    (loss, aux), grads = f(params, rest, x, jnp.zeros(WIDTH, bool))
    return loss, aux, grads


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.float64, 1e-10)])
def test_fast_equals_plain_for_dense_code_methods(dtype, tol):
    with jax.enable_x64(dtype == jnp.float64):
        for method in (sae.ReLUL1(), sae.JumpReLU(), sae.GBA()):
            loss, aux, grads = _grads(method, dtype, "plain")
            loss_f, aux_f, grads_f = _grads(method, dtype, "fast")
            np.testing.assert_allclose(float(loss_f), float(loss), rtol=tol)
            np.testing.assert_array_equal(np.asarray(aux_f["fired"]), np.asarray(aux["fired"]))
            for g, w in zip(jax.tree_util.tree_leaves(grads_f), jax.tree_util.tree_leaves(grads)):
                scale = float(np.max(np.abs(np.asarray(w)))) + 1e-30
                np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=tol, atol=tol * scale)


def test_row_kernels_are_dense_products_and_their_transposes(x64):
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(9, 4)))
    x = jnp.asarray(rng.normal(size=(5, 4)))
    v = jnp.asarray(rng.normal(size=(5, 3)))
    idx = jnp.asarray(np.stack([rng.choice(9, 3, replace=False) for _ in range(5)]), jnp.int32)
    dense = jnp.zeros((5, 9)).at[jnp.arange(5)[:, None], idx].set(v)
    g = jnp.asarray(rng.normal(size=(5, 4)))

    def both(v_, w_, x_):
        return (jnp.sum(g * kernels.rows_combine(v_, idx, w_)) + jnp.sum(v * kernels.rows_dot(x_, idx, w_)),
                jnp.sum(g * (jnp.zeros((5, 9)).at[jnp.arange(5)[:, None], idx].set(v_) @ w_))
                + jnp.sum(v * jnp.take_along_axis(x_ @ w_.T, idx, axis=1)))

    np.testing.assert_allclose(np.asarray(kernels.rows_combine(v, idx, w)), np.asarray(dense @ w), rtol=1e-12)
    got = jax.grad(lambda *a: both(*a)[0], argnums=(0, 1, 2))(v, w, x)
    want = jax.grad(lambda *a: both(*a)[1], argnums=(0, 1, 2))(v, w, x)
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)


def test_formulation_by_shape_and_bad_name():
    assert losses.resolve_formulation("auto", 512, 1024, 128) == "plain"  # the toy problems: bit for bit
    assert losses.resolve_formulation("auto", 4096, 6144, 384) == "fast"
    assert losses.resolve_formulation("plain", 4096, 6144, 384) == "plain"
    with pytest.raises(ValueError, match="formulation"):
        losses.resolve_formulation("sparse", 4, 4, 4)
