"""Work done ahead of the consumer on background threads: one prefetcher for the SAE data path.

`OrderedMap(fn, items, pool=, ahead=)` yields `fn(x)` for x in `items`, in order, keeping up to
`ahead` calls submitted to a thread pool before the consumer asks for them (all in the calling
thread when `pool` is None). Errors raised by `fn` are re-raised in the consumer at the item that
raised them. Two uses, one implementation:

* many workers over independent items: the activation store's block copies (`run_all`) and its
  per-batch row gathers (NumPy releases the GIL in both, so they overlap on several cores);
* `Background(source, size)`: one worker pulling `next(source)` — a sequential producer (a
  generator with state: the store's reader, the trainer's batch source + validation + device
  transfer) runs in its own thread while the consumer computes. One worker keeps the pulls in
  order; submission starts at construction, so the first item is produced while the consumer
  is still setting up.

`close_at_exit(obj)` closes `obj` (a generator or a `Background`) when the interpreter exits if
it is still open, while the standard library is intact: a reader's generator left suspended
with a thread pool then shuts the pool down cleanly instead of failing during interpreter
teardown ("Exception ignored in: <generator ...>").
"""
from __future__ import annotations

import atexit
import itertools
import weakref
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

__all__ = ["OrderedMap", "run_all", "Background", "close_at_exit"]

_END = object()  # marks an exhausted source (a StopIteration cannot cross a Future)
_OPEN: weakref.WeakSet = weakref.WeakSet()  # generators and Backgrounds to close at exit (if still alive)


def close_at_exit(obj):
    """Register `obj` (anything with `close()`, e.g. a generator) to be closed at interpreter exit,
    after the program's non-daemon threads have finished and before module teardown; returns `obj`.
    Holds only a weak reference: an object collected earlier is closed by its own finaliser."""
    _OPEN.add(obj)
    return obj


@atexit.register
def _close_open() -> None:
    for obj in list(_OPEN):
        try:
            obj.close()
        except ValueError:  # a generator still running in a daemon thread cannot be closed from here
            pass


class OrderedMap:
    """Iterator over fn(x) for x in items, in order, with up to `ahead` calls in flight on `pool`.

    The next call is submitted when the consumer asks for an item, before waiting for it, so at
    most `ahead` results exist that the consumer has not taken. pool None: fn runs lazily in the
    consumer's thread. `cancel()` drops the calls not yet started (a running one finishes).
    """

    def __init__(self, fn: Callable[[Any], Any], items: Iterable, *, pool: Executor | None = None, ahead: int = 1):
        self._fn, self._items, self._pool, self._ahead = fn, iter(items), pool, max(1, int(ahead))
        self._pending: deque[Future] = deque()
        self._submit()

    def _submit(self) -> None:
        while self._pool is not None and len(self._pending) < self._ahead:
            x = next(self._items, _END)
            if x is _END:
                return
            self._pending.append(self._pool.submit(self._fn, x))

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        if self._pool is None:
            return self._fn(next(self._items))
        self._submit()
        if not self._pending:
            raise StopIteration
        return self._pending.popleft().result()

    def cancel(self) -> None:
        for f in self._pending:
            f.cancel()
        self._pending.clear()


def run_all(fn: Callable[[Any], Any], items: Iterable, pool: Executor | None = None) -> None:
    """fn(x) for every x, spread over the pool's threads (or here when pool is None); returns
    when all are done, raising the first error in item order."""
    items = list(items)
    deque(OrderedMap(fn, items, pool=pool, ahead=len(items)), maxlen=0)


class Background:
    """Iterate `source` in one background thread, up to `size` items ahead of the consumer.

    Starts producing at construction. Items come out in the source's order; an error raised by
    the source is re-raised here. `close()` cancels what has not started and waits for the item in
    production, so nothing runs in the background afterwards; it runs by itself at the end of the
    source and on an error, and a consumer that stops early calls it.
    """

    def __init__(self, source: Iterable, size: int = 2):
        it = iter(source)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jsparse-prefetch")
        # a queue of `size` finished items plus the one in production, as a bounded queue would hold
        # (the puller closes over the iterator only: no reference cycle keeps the source alive)
        pull = lambda _: next(it, _END)  # noqa: E731
        self._map = OrderedMap(pull, itertools.repeat(None), pool=self._pool, ahead=max(size, 1) + 1)
        self._closed = False
        close_at_exit(self)

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        if self._closed:
            raise StopIteration
        try:
            x = next(self._map)
        except BaseException:
            self.close()
            raise
        if x is _END:
            self.close()
            raise StopIteration
        return x

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._map.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
