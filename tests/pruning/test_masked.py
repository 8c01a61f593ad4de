"""The masked optax wrapper: pruned weights stay exactly 0 under momentum + weight decay."""
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jsparse import pruning


def _sgd_wd():
    return optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1, momentum=0.9, nesterov=True))


def _loss(params, x, y):
    return jnp.mean((x @ params["w"] + params["b"][None, :] - y) ** 2)


def _run(tx, params, state, x, y, steps):
    @jax.jit
    def step(params, state):
        g = jax.grad(_loss)(params, x, y)
        with jax.numpy_dtype_promotion("standard"):  # plain optax (the control) is not strict-clean
            u, state = tx.update(g, state, params)
        return optax.apply_updates(params, u), state

    for _ in range(steps):
        params, state = step(params, state)
    return params, state


@pytest.mark.parametrize("inner", ["sgd", "adamw"])
def test_momentum_and_weight_decay_cannot_revive(inner):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(k1, (32, 6))
    y = jax.random.normal(k2, (32, 3))
    params = {"w": jax.random.normal(k3, (6, 3)), "b": jnp.zeros(3)}
    base = _sgd_wd() if inner == "sgd" else optax.adamw(1e-2, weight_decay=1e-2)
    tx = pruning.masked(base)
    state = tx.init(params)
    params, state = _run(tx, params, state, x, y, 5)  # momentum builds up while everything is trainable
    masks = pruning.magnitude(0.5).prune(params, pruning.init_masks(params))
    params = pruning.apply_masks(params, masks)
    state = pruning.set_masks(state, masks)  # momentum from before pruning is still in the state
    params, state = _run(tx, params, state, x, y, 20)
    pruned = ~np.asarray(masks["w"])
    assert pruned.sum() == 9
    assert np.all(np.asarray(params["w"])[pruned] == 0.0)
    assert np.any(np.asarray(params["w"])[~pruned] != 0.0)
    np.testing.assert_array_equal(pruning.get_masks(state)["w"], masks["w"])

    # Control (the test can fail): the same optimizer without the wrapper revives them.
    plain = base
    pstate = plain.init(params)
    revived, _ = _run(plain, params, pstate, x, y, 3)
    assert np.any(np.asarray(revived["w"])[pruned] != 0.0)


def test_masked_grads_match_manual_and_clip_outside():
    params = {"w": jnp.arange(6.0).reshape(2, 3)}
    masks = {"w": jnp.array([[True, False, True], [False, True, True]])}
    tx = pruning.masked(optax.sgd(1.0), masks)
    g = {"w": jnp.ones((2, 3))}
    u, _ = tx.update(g, tx.init(params), params)
    u = cast(dict, u)  # optax types updates as a generic ArrayTree; they have the params' structure
    np.testing.assert_array_equal(u["w"], -masks["w"].astype(float))
    with pytest.raises(ValueError, match="masks"):
        pruning.masked(optax.sgd(1.0), {"v": masks["w"]}).init(params)
    with pytest.raises(ValueError, match="opt_state"):
        pruning.set_masks(optax.sgd(1.0).init(params), masks)


def test_masks_must_be_boolean():
    from tests.contract import assert_clear_error

    params = {"w": jnp.ones((2, 2))}
    assert_clear_error(pruning.masked(optax.sgd(0.1), {"w": jnp.ones((2, 2))}).init, params, match=r"masks\['w'\]")
    state = pruning.masked(optax.sgd(0.1)).init(params)
    assert_clear_error(pruning.set_masks, state, {"w": jnp.zeros((2, 2), jnp.int32)}, match="boolean")
