"""Data-parallel masked training (CNN with batch norm) on 4 simulated devices equals 1 device."""
import textwrap

import pytest

from tests.scale._subprocess import run_with_devices

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1

SCRIPT = textwrap.dedent(
    r"""
    import jax, jax.numpy as jnp, numpy as np
    from jsparse import pruning
    from jsparse.core import distributed
    from jsparse.pruning import models, train

    assert jax.device_count() == 4
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 64).astype(np.int32)
    x = (rng.normal(size=(3, 4, 4, 1))[y] + 0.3 * rng.normal(size=(64, 4, 4, 1))).astype(np.float32)

    def run(mesh):
        tr = train.Trainer(models.build("cnn", (4, 4, 1), 3, seed=0, widths=(4, 8)), steps_per_round=8,
                           batch_size=16, eval_batch_size=16, mesh=mesh)
        masks = pruning.magnitude(0.5).prune(tr.init_params, pruning.init_masks(tr.init_params))
        state = tr.init_state(pruning.apply_masks(tr.init_params, masks), tr.init_batch_stats, masks)
        for e in range(2):
            state, loss = tr.train_epoch(state, jnp.asarray(x), jnp.asarray(y), jax.random.PRNGKey(e))
        return state, masks

    one, masks = run(None)
    four, _ = run(distributed.data_mesh())
    for a, b in zip(jax.tree_util.tree_leaves((one.params, one.batch_stats)), jax.tree_util.tree_leaves((four.params, four.batch_stats))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    for p, m in zip(jax.tree_util.tree_leaves(four.params), jax.tree_util.tree_leaves(masks)):
        assert np.all(np.asarray(p)[~np.asarray(m)] == 0.0)
    try:
        train.Trainer(models.build("mlp", (4, 4, 1), 3), steps_per_round=4, batch_size=10, mesh=distributed.data_mesh())
    except ValueError as err:
        assert "batch_size" in str(err)
    else:
        raise AssertionError("batch size 10 on 4 devices was accepted")
    print("PRUNE-DP-OK")
    """
)


def test_pruning_training_on_four_devices_matches_one():
    assert "PRUNE-DP-OK" in run_with_devices(SCRIPT)
