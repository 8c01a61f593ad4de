"""One timing convention for every benchmark in experiments/.

Compilation is measured separately (AOT ``lower().compile()``), every run is
``block_until_ready``'d, and the reported figure is the median over repeats. Process
(CPU) time is recorded too: on a shared machine the wall clock includes waiting for a
core, CPU time does not.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax


class Timing(NamedTuple):
    """Seconds. ``median_s``/``cpu_median_s`` are per call, compile excluded."""
    compile_s: float
    median_s: float
    cpu_median_s: float
    times_s: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        return dict(compile_s=self.compile_s, median_s=self.median_s,
                    cpu_median_s=self.cpu_median_s, times_s=list(self.times_s))


def time_call(fn: Callable[..., Any], args: Sequence[Any] = (), *, repeats: int = 3,
              warmup: int = 0) -> Timing:
    """Time ``fn(*args)``: compile once ahead of time, then ``repeats`` timed calls.

    ``fn`` may be a plain function or already jitted; static arguments must be bound
    (``functools.partial``) beforehand so every argument in ``args`` is an array/pytree.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        jax.block_until_ready(compiled(*args))
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(compiled(*args))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return Timing(compile_s, statistics.median(walls), statistics.median(cpus), tuple(walls))


def time_host(fn: Callable[[], Any], *, repeats: int = 3) -> Timing:
    """Time a host-side callable (e.g. a NumPy baseline or a Python loop of dispatches).

    The first call is reported as ``compile_s`` (warm-up: tracing, compilation, caches).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    med = statistics.median(walls)
    return Timing(max(first - med, 0.0), med, statistics.median(cpus), tuple(walls))
