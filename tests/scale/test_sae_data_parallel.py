"""Data-parallel SAE training on 4 simulated devices equals single-device training on the same batches."""
import textwrap

import pytest

from tests.scale._subprocess import run_with_devices

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1

SCRIPT = textwrap.dedent(
    r"""
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from jax.sharding import Mesh
    from jsparse import sae
    from jsparse.core import distributed

    assert jax.device_count() == 4
    stream = sae.make_stream(jax.random.PRNGKey(0), n=32, d=16, s=2, batch_size=64)
    batches = [np.asarray(stream.batch(i)) for i in range(30)]
    for method in ("gba", "topk"):
        kw = dict(method=method, width=48, steps=30, key=jax.random.PRNGKey(1), log_every=5, update_every=5)
        if method == "topk":
            kw.pop("update_every"); kw["k"] = 4
        one, h1 = sae.train(batches, **kw)
        four, h4 = sae.train(batches, mesh=distributed.data_mesh(), **kw)
        for a, b in zip(jax.tree_util.tree_leaves(nnx.state(one)), jax.tree_util.tree_leaves(nnx.state(four))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(h1["loss"], h4["loss"], rtol=2e-4)
        if method == "gba":  # the bias moved, so the all-reduced fire statistics drove the same updates
            assert not np.allclose(np.asarray(one.bias[...]), np.asarray(one.bias[...])[0])
    # wide-SAE layout: batches over "data", latents over "model" (2 x 2 mesh) — same result
    mesh2 = Mesh(np.asarray(jax.devices()).reshape(2, 2), ("data", "model"))
    kw = dict(method="gba", width=48, steps=30, key=jax.random.PRNGKey(1), log_every=5, update_every=5)
    ref, _ = sae.train(batches, **kw)
    wide, _ = sae.train(batches, mesh=mesh2, shard_latents=True, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(nnx.state(ref)), jax.tree_util.tree_leaves(nnx.state(wide))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)
    try:
        sae.train(batches, shard_latents=True, mesh=distributed.data_mesh(), **kw)
    except ValueError as err:
        assert "model" in str(err), err
    else:
        raise AssertionError("shard_latents without a model axis was accepted")
    # an odd global batch cannot be split over 4 devices; a mesh without a "data" axis is refused
    for bad, word in ((dict(mesh=distributed.data_mesh()), "batches"),
                      (dict(mesh=Mesh(np.asarray(jax.devices()), ("model",))), "mesh")):
        data = [np.asarray(stream.batch(0))[:62]] if word == "batches" else batches
        try:
            sae.train(data, method="gba", width=8, groups=2, steps=1, key=jax.random.PRNGKey(0), **bad)
        except ValueError as err:
            assert word in str(err), err
        else:
            raise AssertionError(f"accepted bad {word}")
    print("SAE-DP-OK")
    """
)


def test_sae_training_on_four_devices_matches_one():
    assert "SAE-DP-OK" in run_with_devices(SCRIPT)
