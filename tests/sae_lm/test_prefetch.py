"""The one prefetcher of the SAE data path (`jsparse.sae.prefetch`): order, bounded look-ahead,
errors re-raised in the consumer at the item that failed, and nothing left running after close;
as used by the store's reader, `device_batches` and the trainer's `pipeline.Prefetcher`."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from jsparse.sae.pipeline import Prefetcher, check_batch
from jsparse.sae.prefetch import Background, OrderedMap, run_all

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1


def _settle(counter, timeout=2.0):
    """Wait until the background work stops changing `counter` (a list of started calls)."""
    last, t0 = -1, time.monotonic()
    while len(counter) != last and time.monotonic() - t0 < timeout:
        last = len(counter)
        time.sleep(0.05)
    return len(counter)


@pytest.mark.parametrize("threads", [None, 1, 3])
def test_ordered_map_in_order_and_bounded(threads):
    started = []

    def fn(x):
        started.append(x)
        time.sleep(0.001 * (x % 3))  # finish out of order on several threads
        return x * x

    pool = ThreadPoolExecutor(threads) if threads else None
    try:
        m = OrderedMap(fn, range(20), pool=pool, ahead=3)
        assert _settle(started) == (0 if pool is None else 3)  # lazy without a pool, `ahead` calls with one
        assert next(m) == 0
        assert _settle(started) <= (1 if pool is None else 4)
        assert [0, *m] == [x * x for x in range(20)]
    finally:
        if pool is not None:
            pool.shutdown()


def test_ordered_map_raises_at_the_failing_item():
    def fn(x):
        if x == 3:
            raise KeyError("item 3")
        return x

    with ThreadPoolExecutor(2) as pool:
        m = OrderedMap(fn, range(6), pool=pool, ahead=4)
        assert [next(m) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(KeyError, match="item 3"):
            next(m)
        m.cancel()
    done = []
    run_all(done.append, range(5))
    assert done == list(range(5))
    with ThreadPoolExecutor(2) as pool, pytest.raises(KeyError):
        run_all(fn, range(6), pool)


def test_background_starts_at_once_runs_ahead_bounded_and_stops_on_close():
    pulled, first = [], threading.Event()

    def source():
        for i in range(1000):
            pulled.append(i)
            first.set()
            yield i

    bg = Background(source(), size=2)
    assert first.wait(2.0)  # producing before the consumer asks
    assert _settle(pulled) <= 3  # `size` ready plus the one in production
    assert [next(bg) for _ in range(5)] == list(range(5))
    bg.close()
    n = _settle(pulled)
    time.sleep(0.1)
    assert len(pulled) == n <= 5 + 3 and list(bg) == []  # nothing runs after close


def test_background_reraises_source_errors_after_the_good_items():
    def source():
        yield from range(3)
        raise ValueError("source failed")

    bg = Background(source(), size=1)
    assert [next(bg) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="source failed"):
        next(bg)
    assert list(bg) == []


def test_pipeline_prefetcher_validates_in_order():
    good = [(i, np.full((4, 3), i, np.float32)) for i in range(5)]
    pre = Prefetcher(iter(good), lambda b, i: check_batch(b, i, 3, 4, np.float32), size=2)
    try:
        got = list(pre)
    finally:
        pre.close()
    assert [i for i, _ in got] == list(range(5))
    assert all(np.array_equal(np.asarray(x), b) for (_, x), (_, b) in zip(got, good))
    bad = good[:2] + [(2, np.full((4, 3), np.nan, np.float32))] + good[3:]
    pre = Prefetcher(iter(bad), lambda b, i: check_batch(b, i, 3, 4, np.float32), size=2)
    try:
        it = iter(pre)
        assert [next(it)[0] for _ in range(2)] == [0, 1]
        with pytest.raises(ValueError, match="batches: batch 2 contains NaN"):
            next(it)
    finally:
        pre.close()


def test_open_background_and_generators_are_closed_at_exit():
    """What runs at interpreter exit (`prefetch._close_open`) closes every Background and every
    generator registered with `close_at_exit` that is still open, stopping their threads."""
    from jsparse.sae import prefetch

    closed = []

    def gen():
        try:
            yield from range(10)
        finally:
            closed.append(True)

    before = set(threading.enumerate())
    g = prefetch.close_at_exit(gen())
    bg = Background(iter(range(100)), size=2)
    assert next(g) == 0 and next(bg) == 0
    started = set(threading.enumerate()) - before
    assert any(t.name.startswith("jsparse-prefetch") for t in started)
    prefetch._close_open()
    assert closed == [True] and list(g) == [] and list(bg) == []
    assert not any(t.is_alive() for t in started)
