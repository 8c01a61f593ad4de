"""TopK / BatchTopK training loss against a plain dense re-statement (codes as a dense (B, M) array
times the decoder, AuxK by gathering the top aux_k dead decoder rows): loss and every gradient
agree to 1e-5 (float32) and 1e-10 (float64), with and without dead latents."""
import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jsparse import sae

tr = importlib.import_module("jsparse.sae.train")  # the module (jsparse.sae.train is also the function)
D, WIDTH, B, K, AUX_K = 8, 24, 16, 3, 5


def _reference_loss(method, params, rest, *, graphdef, x, dead):
    """The training loss written out densely (the formulation of the first release)."""
    m = nnx.merge(graphdef, params, rest)
    xn = x * m.input_scale[...]
    z = (xn - m.b_pre[...][None, :]) @ m.w_enc[...].T + m.b_enc[...][None, :]
    if method.activation == "topk":
        _, idx = jax.lax.top_k(z, K)
        mask = jnp.zeros(z.shape, bool).at[jnp.arange(B)[:, None], idx].set(True)
        codes = jnp.where(mask, jax.nn.relu(z), 0)
    else:
        r = jax.nn.relu(z)
        kth = jnp.sort(jax.lax.stop_gradient(r).ravel())[-K * B]
        codes = jnp.where((r >= kth) & (r > 0), r, 0)
    w = m.decoder_weight()
    resid = xn - (codes @ w + m.b_pre[...][None, :])
    loss = 0.5 * jnp.mean(jnp.sum(resid**2, axis=1))
    zd = jnp.where(dead[None, :], z, -jnp.inf)
    vals, idx = jax.lax.top_k(zd, AUX_K)
    acts = jnp.where(jnp.isfinite(vals), jax.nn.relu(vals), 0)
    rec = jnp.einsum("bk,bkd->bd", acts, w[idx])
    scale = jnp.minimum(jnp.sum(dead).astype(z.dtype) / AUX_K, 1.0)
    aux = scale * 0.5 * jnp.mean(jnp.sum((jax.lax.stop_gradient(resid) - rec) ** 2, axis=1))
    return loss + method.aux_coef * aux


def _problem(name, dtype, seed):
    method = {"topk": sae.TopK, "batchtopk": sae.BatchTopK}[name](k=K, aux_k=AUX_K, aux_coef=0.5)
    method = method.resolve(D, WIDTH)
    model = tr.build(method, D, WIDTH, jax.random.PRNGKey(seed), dtype=dtype)
    rng = np.random.default_rng(seed)
    model.b_enc[...] = jnp.asarray(rng.normal(size=WIDTH) * 0.3, dtype)
    model.b_pre[...] = jnp.asarray(rng.normal(size=D) * 0.1, dtype)
    model.input_scale[...] = jnp.asarray(0.7, dtype)
    x = jnp.asarray(rng.normal(size=(B, D)), dtype)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return method, graphdef, params, rest, x


def _compare(name, dtype, tol, **step_options):
    """Library loss and gradients vs the reference for every dead-latent pattern in DEAD (one compile)."""
    method, graphdef, params, rest, x = _problem(name, dtype, seed=3)
    lib = jax.jit(jax.value_and_grad(functools.partial(tr._loss, graphdef, method.step_part(), **step_options),
                                     has_aux=True))
    ref = jax.jit(jax.value_and_grad(functools.partial(_reference_loss, method, graphdef=graphdef), argnums=0))
    for dead in DEAD.values():
        dead = jnp.asarray(dead)
        (loss, _), grads = lib(params, rest, x, dead)
        want_loss, want = ref(params, rest, x=x, dead=dead)
        np.testing.assert_allclose(float(loss), float(want_loss), rtol=tol)
        for (path, g), (_, w) in zip(jax.tree_util.tree_leaves_with_path(grads),
                                     jax.tree_util.tree_leaves_with_path(want)):
            scale = float(np.max(np.abs(np.asarray(w)))) + 1e-30
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=tol, atol=tol * scale, err_msg=str(path))


DEAD = {"none": np.zeros(WIDTH, bool), "few": np.arange(WIDTH) < 2, "many": np.arange(WIDTH) % 2 == 0}


@pytest.mark.parametrize("formulation", ["plain", "fast"])
@pytest.mark.parametrize("name", ["topk", "batchtopk"])
def test_loss_and_grads_match_dense_reference_float32(name, formulation):
    _compare(name, jnp.float32, 1e-5, formulation=formulation)


@pytest.mark.parametrize("name", ["topk", "batchtopk"])
def test_loss_and_grads_match_dense_reference_float64(name, x64, formulation="fast"):
    _compare(name, jnp.float64, 1e-10, formulation=formulation)
