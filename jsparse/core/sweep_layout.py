"""The layout of a Monte Carlo sweep: which grid values are traced or static, the flat item list,
its chunks and their device padding, and the assembly of per-chunk outputs into grid arrays.

Used by `jsparse.core.montecarlo.sweep`; kept apart so the sweep itself reads as its loop.
"""
from __future__ import annotations

import itertools
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

TRIAL_AXIS = "trials"


def is_numeric(value: Any) -> bool:
    """Numeric grid values (ints, floats, not bools) are traced; everything else is static."""
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def put(host: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from identical host data on every process (works on one or many hosts)."""
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


class Plan(NamedTuple):
    """The static layout of one sweep: grid split, flat item columns, chunking, devices."""

    grid: dict
    names: list
    numeric: list
    static: list
    static_combos: list
    num_trials: int
    chunk_size: int
    dispatch_size: int
    n_items: int
    n_chunks: int
    trial_idx: np.ndarray
    value_columns: list
    mesh: Mesh
    batch_size: int | None
    base_key: Any


def make_plan(trial_grid, num_trials, chunk_size, batch_size, mesh, base_key) -> Plan:
    grid = trial_grid
    n_dev = mesh.shape[TRIAL_AXIS]
    if batch_size is None and n_dev > 1 and jax.default_backend() == "cpu":
        # jaxlib 0.10.x: batched LAPACK calls (eigh, svd) of several CPU devices running at once can
        # deadlock in the shared intra-op thread pool; mapping one trial at a time avoids them.
        batch_size = 1
    names = list(grid)
    numeric = [n for n in names if is_numeric(grid[n][0])]
    static = [n for n in names if n not in numeric]
    numeric_points = list(itertools.product(*(range(len(grid[n])) for n in numeric)))
    n_items = len(numeric_points) * num_trials
    # Flat item list: numeric grid point major, trial minor.
    point_idx = np.repeat(np.arange(len(numeric_points)), num_trials)
    value_columns = [
        np.asarray(jnp.asarray([grid[n][numeric_points[p][j]] for p in range(len(numeric_points))]))[point_idx]
        for j, n in enumerate(numeric)
    ]
    return Plan(
        grid=grid, names=names, numeric=numeric, static=static,
        static_combos=list(itertools.product(*(range(len(grid[n])) for n in static))),
        num_trials=num_trials, chunk_size=chunk_size,
        dispatch_size=-(-chunk_size // n_dev) * n_dev,  # a chunk padded to whole device slices
        n_items=n_items, n_chunks=-(-n_items // chunk_size),
        trial_idx=np.tile(np.arange(num_trials, dtype=np.int32), len(numeric_points)),
        value_columns=value_columns, mesh=mesh, batch_size=batch_size, base_key=base_key,
    )


def chunk_args(plan: Plan, c: int) -> tuple:
    """Items of chunk c, padded (by repeating the last item) to `dispatch_size`."""
    idx = np.arange(c * plan.chunk_size, c * plan.chunk_size + plan.dispatch_size)
    idx = np.minimum(idx, min((c + 1) * plan.chunk_size, plan.n_items) - 1)
    columns = (plan.trial_idx[idx], *(col[idx] for col in plan.value_columns))
    item_sharding = NamedSharding(plan.mesh, P(TRIAL_AXIS))
    replicated = NamedSharding(plan.mesh, P())
    return (put(np.asarray(plan.base_key), replicated), *(put(col, item_sharding) for col in columns))


def assemble(plan: Plan, per_static: list) -> dict[str, np.ndarray]:
    """(*grid_shape, num_trials, *leaf) arrays from the per-static-combination item arrays."""
    grid, names = plan.grid, plan.names
    grid_shape = tuple(len(grid[n]) for n in names)
    numeric_shape = tuple(len(grid[n]) for n in plan.numeric)
    arrays: dict[str, np.ndarray] = {}
    for k, first in per_static[0].items():
        full = np.empty(grid_shape + (plan.num_trials,) + first.shape[1:], first.dtype)
        for combo, outputs in zip(plan.static_combos, per_static):
            block = outputs[k].reshape(numeric_shape + (plan.num_trials,) + first.shape[1:])
            index = tuple(combo[plan.static.index(n)] if n in plan.static else slice(None) for n in names)
            # Static axes are fixed by `index`; the numeric axes keep their relative order.
            full[index] = block
        arrays[k] = full
    return arrays


def records(plan: Plan, arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    grid, names = plan.grid, plan.names
    grid_shape = tuple(len(grid[n]) for n in names)
    records = []
    scalar_keys = [k for k, v in arrays.items() if v.ndim == len(grid_shape) + 1]
    for gidx in itertools.product(*(range(len(grid[n])) for n in names)):
        params = {n: grid[n][i] for n, i in zip(names, gidx)}
        for t in range(plan.num_trials):
            row = dict(params, trial=t)
            for k in scalar_keys:
                row[k] = arrays[k][gidx + (t,)].item()
            records.append(row)
    return records
