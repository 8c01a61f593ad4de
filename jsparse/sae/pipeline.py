"""Data pipeline of the trainer: batch sources, per-batch validation, background prefetch.

A source is a `SyntheticStream` (anything with a callable `batch(i)`), a callable `i -> (B, d)`
array, or an iterable (skipped ahead on resume). `Prefetcher` runs the source and the validation (shape, row
count, NaN/Inf; `ValueError` naming `batches`) in a thread, so batch i + 1 is ready while the
jitted step of batch i runs; errors are re-raised in the consumer.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from .prefetch import Background

__all__ = ["batch_iter", "check_batch", "is_indexed", "Prefetcher"]


def is_indexed(batches: Any) -> bool:
    """True for a source read by index: a callable, or an object whose `batch` is a method
    (an iterator that merely has a `batch` attribute, such as its batch size, is an iterable)."""
    return callable(getattr(batches, "batch", None)) or callable(batches)


def batch_iter(batches: Any, start: int, stop: int):
    """Yield (i, batch) for i in [start, stop) from a stream, a callable or an iterable."""
    if is_indexed(batches):
        method = getattr(batches, "batch", None)
        get: Callable = method if callable(method) else batches
        for i in range(start, stop):
            yield i, get(i)
        return
    it = iter(batches)
    for i in range(stop):
        try:
            b = next(it)
        except StopIteration:
            raise ValueError(f"batches: ran out after {i} batches, {stop} steps requested") from None
        if i >= start:
            yield i, b


def check_batch(x, i, d, batch_size, dtype):
    x = np.asarray(x) if not isinstance(x, jax.Array) else x
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"batches: batch {i} has shape {tuple(x.shape)}, expected (batch, {d})")
    if batch_size is not None and x.shape[0] != batch_size:
        raise ValueError(f"batches: batch {i} has {x.shape[0]} rows, the first had {batch_size}")
    if not np.all(np.isfinite(np.asarray(x))):
        raise ValueError(f"batches: batch {i} contains NaN or Inf values")
    return jnp.asarray(x, dtype)


class Prefetcher:
    """Background thread that produces validated device batches ahead of the train step.

    source: iterable of (i, host batch); check(batch, i) -> device batch (validates, places).
    Iterating yields (i, device batch) in order, up to `size` ready ahead; errors raised by the
    source or by check are re-raised in the consumer. `close()` stops the thread."""

    def __init__(self, source, check, size: int = 2):
        self._ahead = Background(((i, jax.block_until_ready(check(b, i))) for i, b in source), size)

    def __iter__(self):
        return iter(self._ahead)

    def close(self):
        self._ahead.close()
