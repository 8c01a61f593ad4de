"""Masked training as an optax wrapper: the masks live in the optimizer state.

`masked(inner)` zeroes the gradients of pruned weights before `inner` sees them AND zeroes the
updates `inner` returns.  Masking the gradients keeps pruned entries out of gradient statistics
(momentum, Adam moments, ...); masking the updates means that even momentum accumulated before a
weight was pruned, or weight decay inside `inner`, can never move a pruned weight.  Pruned
weights that start at exactly 0 therefore stay exactly 0 with any optax optimizer.

Do not use `optax.masked` for this: it passes the raw gradient through for leaves outside its
mask (optax #159), which revives pruned weights.

Note on clipping: the reference clips by the global norm of the *unmasked* gradient, then zeroes
pruned entries; put `optax.clip_by_global_norm` outside the wrapper to match it
(`optax.chain(clip_by_global_norm(1.0), masked(chain(add_decayed_weights(wd), sgd(...))))`).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jsparse.core import validation

__all__ = ["MaskedState", "masked", "set_masks", "get_masks"]


class MaskedState(NamedTuple):
    masks: Any  # pytree of booleans with the parameters' structure (True = trainable)
    inner_state: Any


def _zero_where_pruned(tree: Any, masks: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda u, m: None if u is None else jnp.where(m, u, jnp.zeros((), u.dtype)), tree, masks,
        is_leaf=lambda x: x is None)


def masked(inner: optax.GradientTransformation, masks: Any = None) -> optax.GradientTransformationExtraArgs:
    """Wrap `inner` so that entries with mask False get zero gradient and zero update.

    `init(params)` stores `masks` (or all-True masks when None); change them later with
    `set_masks(opt_state, new_masks)` — the masks are data in the state, so a jitted step does
    not recompile when they change.
    """
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        m = masks if masks is not None else jax.tree_util.tree_map(lambda p: jnp.ones(jnp.shape(p), bool), params)
        if masks is not None:
            validation.check_same_tree(m, params, "masks", "params")
            validation.check_tree(m, "masks", boolean=True)  # a float mask would scale updates, not freeze
        return MaskedState(masks=m, inner_state=inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        grads = _zero_where_pruned(updates, state.masks)
        # optax mixes int step counts with floats (bias corrections, schedules): standard promotion
        # for its code only, so callers may run with jax_numpy_dtype_promotion="strict".
        with jax.numpy_dtype_promotion("standard"):
            new_updates, inner_state = inner.update(grads, state.inner_state, params, **extra_args)
        return _zero_where_pruned(new_updates, state.masks), MaskedState(state.masks, inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _is_masked_state(x: Any) -> bool:
    return isinstance(x, MaskedState)


def set_masks(opt_state: Any, masks: Any) -> Any:
    """Return `opt_state` with the masks of every `MaskedState` inside it replaced by `masks`."""
    found = []

    def swap(s):
        if isinstance(s, MaskedState):
            validation.check_same_tree(masks, s.masks, "masks", "the optimizer's masks")
            validation.check_tree(masks, "masks", boolean=True)
            found.append(True)
            return s._replace(masks=masks)
        return s

    out = jax.tree_util.tree_map(swap, opt_state, is_leaf=_is_masked_state)
    if not found:
        raise ValueError("opt_state: holds no MaskedState (build the optimizer with pruning.masked)")
    return out


def get_masks(opt_state: Any) -> Any:
    """The masks of the first `MaskedState` inside `opt_state`."""
    for s in jax.tree_util.tree_leaves(opt_state, is_leaf=_is_masked_state):
        if isinstance(s, MaskedState):
            return s.masks
    raise ValueError("opt_state: holds no MaskedState (build the optimizer with pruning.masked)")
