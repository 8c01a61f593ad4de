"""SAE training methods as frozen, hashable values: `GBA`, `BA`, `TopK`, `BatchTopK`, `ReLUL1`, `JumpReLU`.

    sae.train(batches, method=sae.TopK(k=32), width=1024, steps=2000, key=key)
    sae.train(batches, method="topk", k=32, ...)      # the string shorthand: the same value

A method supplies every method-specific piece of training (the `Method` protocol):
  model_options()      the SAE it trains: activation, tied decoder, output scale and its start, ...
  resolve(d, width)    the value checked against the data and width, data-dependent defaults filled
  target_vector(...)   (M,) per-latent target frequencies kept in the train state (ones: none)
  start(model, x0, t)  anything set from the first batch before step 1 (GBA/BA's quantile bias start)
  step_part()          the hashable object the jitted step is built from (its compile-cache key):
                         penalty(model, codes, z, resid, dead) -> extra loss term or None
                         post_step(model, stats, targets, step, codes, z) -> window stats
                       (GBA/BA: the bias rule, which reads the targets from the state, so a sweep
                       over targets compiles once; BatchTopK: the inference-threshold EMA.)
  legacy_options()     the method's entries of the checkpoint metadata (older checkpoints resume)

Settings are validated when the value is made (ValueError naming the field); the checks that
need the width or the input dimension run in `resolve`.
"""
from __future__ import annotations

import dataclasses

from jsparse.core import validation as val

from .adaptive import BA, GBA, AdaptiveMethod, BiasRuleStep
from .baselines import BatchTopK, JumpReLU, ReLUL1, TopK, aux_loss
from .method_base import Method, MethodBase, check_names

__all__ = ["Method", "MethodBase", "AdaptiveMethod", "GBA", "BA", "TopK", "BatchTopK", "ReLUL1", "JumpReLU",
           "METHODS", "METHOD_TYPES", "as_method", "aux_loss", "BiasRuleStep"]

METHOD_TYPES: dict[str, type[MethodBase]] = {c.name: c for c in (GBA, BA, TopK, BatchTopK, ReLUL1, JumpReLU)}
METHODS: tuple[str, ...] = tuple(METHOD_TYPES)


def as_method(method: str | Method = "gba", **options) -> Method:
    """The method value of `method`: a name in METHODS (its defaults, overridden by `options`,
    the value's field names; None means "the default") or a method value (`options` replace its
    fields). A setting the method does not have raises ValueError naming it."""
    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(method, str):
        val.check_choice(method, "method", METHODS)
        return METHOD_TYPES[method].from_options(**options)
    if isinstance(method, MethodBase):
        check_names(type(method), options)
        return dataclasses.replace(method, **options) if options else method
    if isinstance(method, Method):
        if options:
            raise ValueError(f"{next(iter(options))}: set it on the method value {method!r}")
        return method
    raise ValueError(f"method: expected one of {METHODS} or a method value such as sae.GBA(), got {method!r}")
