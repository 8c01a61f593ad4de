"""Data pipeline of the trainer: batch sources, per-batch validation, background prefetch.

A source is a `SyntheticStream` (anything with `batch(i)`), a callable `i -> (B, d)` array, or an
iterable (skipped ahead on resume). `Prefetcher` runs the source and the validation (shape, row
count, NaN/Inf; `ValueError` naming `batches`) in a thread, so batch i + 1 is ready while the
jitted step of batch i runs; errors are re-raised in the consumer.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["batch_iter", "check_batch", "Prefetcher"]


def batch_iter(batches, start: int, stop: int):
    """Yield (i, batch) for i in [start, stop) from a stream, a callable or an iterable."""
    if hasattr(batches, "batch"):
        get: Callable | None = batches.batch
    elif callable(batches):
        get = batches
    else:
        get = None
    if get is not None:
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
    """Background thread that produces validated device batches ahead of the train step."""

    def __init__(self, source, check, size: int = 2):
        self._q: queue.Queue = queue.Queue(maxsize=max(size, 1))
        self._stop = threading.Event()

        def work():
            try:
                for i, b in source:
                    item = (i, jax.block_until_ready(check(b, i)))
                    while not self._stop.is_set():
                        try:
                            self._q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if self._stop.is_set():
                        return
                self._q.put(None)
            except BaseException as err:  # handed to the consumer, re-raised there
                self._q.put(err)

        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()

    def __iter__(self):
        while True:
            item = self._q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
