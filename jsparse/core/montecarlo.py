"""Monte Carlo sweeps: many trials x a parameter grid, in a few jitted dispatches, resumable.

    result = sweep(trial_fn, {"snr_db": [10, 20, 30], "method": ["svd", "am"]},
                   num_trials=200, key=0, chunk_size=256, out_dir="results/fig3")

* `trial_fn(key, **params) -> dict[str, array]` simulates and scores one trial.
* Numeric grid values (ints, floats) are *traced*: every numeric grid point shares one compiled
  program. Other values (strings, tuples, bools, None) are *static*: one program per value.
* Trial `t` uses `jax.random.fold_in(key, t)` at every grid point (common random numbers across
  the grid) — so results do not depend on chunking, batching or the number of devices.
* Work is cut into chunks of `chunk_size` (grid point, trial) items. Each chunk is one dispatch:
  `lax.map` over batches of `batch_size` items, each batch vmapped (bounds memory). The last
  chunk is padded to a full chunk (no recompilation) and the padding is discarded.
* Devices: the items of a chunk are split over a 1-D device mesh (axis "trials"; all local devices
  by default, all global devices after `jax.distributed.initialize()`) with `shard_map`; each
  device maps its own slice. A chunk is padded to a multiple of the device count and the padding
  is discarded, so checkpoints and results do not depend on the number of devices.
* With `out_dir`, each finished chunk is saved atomically; a sweep killed at any point and started
  again with the same settings loads the saved chunks and computes only the rest (bit-identical
  to an uninterrupted run). `out_dir/name/manifest.json` records every setting the numbers depend
  on -- the trial function's code fingerprint (`jsparse.core.code_fingerprint`: its bytecode,
  defaults, captured values and the helpers and globals it uses, not only its name), the grid,
  key, trials, chunking, 64-bit mode, backend and JAX version. A folder whose manifest differs,
  or which holds chunks without a manifest, is refused with a ValueError saying what differs
  (`on_mismatch="recompute"` deletes it and computes afresh instead); old numbers are never
  returned for new settings. Each chunk carries a SHA-256 checksum and a seal tying it to the
  manifest and its position; a chunk failing either raises `CorruptFileError` naming the file.
* Outputs: `arrays[name]` of shape (*grid_shape, num_trials, *leaf_shape), and tidy `records`
  (one dict per grid point and trial, with the scalar outputs), plus `meta` (settings, seed,
  environment, compile and run seconds). With `out_dir` these are also written as
  `arrays.npz`, `records.json` and `meta.json`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jsparse.core import distributed
from jsparse.core import records as rec
from jsparse.core import sweep_layout as L
from jsparse.core import sweep_store as store
from jsparse.core.code_fingerprint import code_fingerprint
from jsparse.core.progress import progress as progress_bar

__all__ = ["SweepResult", "sweep", "load_finished", "trial_keys", "TRIAL_AXIS", "trial_mesh"]

TRIAL_AXIS = L.TRIAL_AXIS


class SweepResult(NamedTuple):
    arrays: dict[str, np.ndarray]
    records: list[dict[str, Any]]
    grid: dict[str, list[Any]]
    meta: dict[str, Any]


def _as_key(key: Any) -> tuple[jax.Array, Any]:
    """Accept an int seed, a raw uint32 PRNG key or a typed key; return (raw key, record)."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.PRNGKey(int(key)), int(key)
    arr = jnp.asarray(key)
    if jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
        arr = jax.random.key_data(arr)
    if arr.dtype != jnp.uint32 or arr.ndim != 1:
        raise ValueError(f"key: expected an int seed or a single PRNG key, got dtype {arr.dtype} shape {arr.shape}")
    return arr, np.asarray(arr).tolist()


def trial_keys(key: jax.Array, trials: jax.Array) -> jax.Array:
    """Per-trial keys: fold_in(key, t) for each trial index t (vectorised)."""
    return jax.vmap(lambda t: jax.random.fold_in(key, t))(trials)


def _validate(grid: Mapping[str, Sequence[Any]], num_trials: int, chunk_size: int, batch_size: int | None):
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid: expected a dict of parameter name -> list of values, got {type(grid).__name__}")
    out = {}
    for name, values in grid.items():
        if not isinstance(name, str) or not name.isidentifier() or name in ("key", "trial"):
            raise ValueError(f"grid: parameter names must be identifiers other than 'key'/'trial', got {name!r}")
        values = list(values) if isinstance(values, (list, tuple, np.ndarray)) else None
        if not values:
            raise ValueError(f"grid[{name!r}]: expected a non-empty list of values")
        kinds = {L.is_numeric(v) for v in values}
        if len(kinds) > 1:
            raise ValueError(f"grid[{name!r}]: mixes numeric and non-numeric values")
        out[name] = [v.item() if isinstance(v, np.generic) else v for v in values]
    for value, label in ((num_trials, "num_trials"), (chunk_size, "chunk_size")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{label}: expected a positive integer, got {value!r}")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size: expected a positive integer or None, got {batch_size!r}")
    return out


def trial_mesh(
    devices: Sequence[jax.Device] | None = None,  # pyright: ignore[reportInvalidTypeForm]  # untyped alias of a compiled class
    mesh: Mesh | None = None,
) -> Mesh:
    """The 1-D mesh the trial axis is split over (axis name `TRIAL_AXIS`).

    Args:
      devices: devices to use (default: all devices, global across hosts once
        `jax.distributed.initialize()` has run).
      mesh: an explicit mesh; it must have an axis named "trials" (other axes are replicated over).
    """
    if mesh is not None and devices is not None:
        raise ValueError("devices: pass either devices or mesh, not both")
    return distributed.data_mesh(devices, mesh, axis=TRIAL_AXIS)


def _chunk_program(trial_fn: Callable, numeric_names: Sequence[str], static: dict, batch_size: int | None, mesh: Mesh):
    """The jitted function computing one chunk of items for one static combination.

    The item axis is split over the mesh's trial axis with shard_map; each device maps its
    slice (whole-slice vmap, or lax.map over vmapped batches of `batch_size`).
    """

    def one(key, t, *values):
        params = dict(zip(numeric_names, values), **static)
        return trial_fn(jax.random.fold_in(key, t), **params)

    def chunk(key, trials, *values):
        items = (trials, *values)
        if batch_size is None:
            return jax.vmap(lambda t, *v: one(key, t, *v))(*items)
        return lax.map(lambda it: one(key, *it), items, batch_size=batch_size)

    n_values = len(numeric_names)
    sharded = jax.shard_map(
        chunk,
        mesh=mesh,
        in_specs=(P(), P(TRIAL_AXIS), *([P(TRIAL_AXIS)] * n_values)),
        out_specs=P(TRIAL_AXIS),
        check_vma=False,
    )
    return jax.jit(sharded)


def _fetch(tree: Any) -> dict[str, np.ndarray]:
    """Bring a chunk's outputs to this host (all-gathered when several processes take part)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        tree = multihost_utils.process_allgather(tree, tiled=True)
    return {k: np.asarray(v) for k, v in tree.items()}


def load_finished(out_dir: str | Path, name: str, static_index: int = 0,
                  trial_fn: Callable | None = None) -> dict[str, np.ndarray] | None:
    """Outputs of the contiguous prefix of finished chunks of a sweep, or None if there are none.

    For sweeps killed before the end (or still running elsewhere): the arrays of chunks 0, 1, ...
    of static combination `static_index`, concatenated along the item axis (numeric grid point
    major, trial minor). Reads only what `sweep(..., out_dir=out_dir, name=name)` saved; every
    chunk's checksum and seal are checked against the folder's manifest.

    Args:
      trial_fn: when given, the saved sweep must have been computed by this code (same code
        fingerprint), else ValueError.

    Raises:
      ValueError: chunks without a manifest, or a `trial_fn` other than the saved one's.
      CorruptFileError: a damaged, replaced or foreign chunk, or an unreadable manifest.
    """
    folder = Path(out_dir) / name
    manifest = store.read_manifest(folder)
    if manifest is None:
        if any((folder / "chunks").glob("static*_chunk*.npz")):
            raise ValueError(f"out_dir: {folder} holds sweep chunks but no {store.MANIFEST}; they cannot be checked")
        return None
    if trial_fn is not None and manifest.get("trial_fn_code") != code_fingerprint(trial_fn):
        raise ValueError(f"trial_fn: the sweep in {folder} was computed by other code "
                         f"(fingerprint {manifest.get('trial_fn_code')}, now {code_fingerprint(trial_fn)})")
    digest = store.manifest_digest(manifest)
    pieces = []
    while store.chunk_path(folder, static_index, len(pieces)).exists():
        c = len(pieces)
        pieces.append(store.load_chunk(store.chunk_path(folder, static_index, c), digest, static_index, c))
    if not pieces:
        return None
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


class _Timing(NamedTuple):
    digest: str  # of the manifest: seals every chunk
    compile_seconds: dict
    run_seconds: list  # one-element accumulator
    computed: list


def _run_static(trial_fn, plan: L.Plan, s: int, folder, bar, timing: _Timing) -> dict[str, np.ndarray]:
    """All chunks of static combination s (loaded when saved, computed otherwise), joined."""
    combo = plan.static_combos[s]
    static_values = {n: plan.grid[n][i] for n, i in zip(plan.static, combo)}
    program, compiled = _chunk_program(trial_fn, plan.numeric, static_values, plan.batch_size, plan.mesh), None
    pieces = []
    for c in range(plan.n_chunks):
        path = None if folder is None else store.chunk_path(folder, s, c)
        if path is not None and path.exists():
            pieces.append(store.load_chunk(path, timing.digest, s, c))
            continue
        args = L.chunk_args(plan, c)
        if compiled is None:
            t0 = time.perf_counter()
            compiled = program.lower(*args).compile()
            timing.compile_seconds[str(static_values)] = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        timing.run_seconds[0] += time.perf_counter() - t0
        if not isinstance(out, Mapping):
            raise ValueError(f"trial_fn: must return a dict of arrays, got {type(out).__name__}")
        n_real = min(plan.chunk_size, plan.n_items - c * plan.chunk_size)
        out = {k: v[:n_real] for k, v in _fetch(out).items()}  # drop the padding
        if path is not None and jax.process_index() == 0:  # one process writes files
            store.save_chunk(path, timing.digest, s, c, out)
        pieces.append(out)
        timing.computed[0] += 1
        bar.update(1)
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


def _manifest(trial_fn, grid, num_trials, chunk_size, batch_size, key_record, name, saved) -> dict[str, Any]:
    """Every setting the saved chunks depend on (see `jsparse.core.sweep_store`); the code
    fingerprint only when the sweep is `saved` to a folder."""
    target = getattr(trial_fn, "func", trial_fn)  # functools.partial
    label = getattr(target, "__qualname__", type(target).__qualname__)
    code = code_fingerprint(trial_fn) if saved else None
    return {"name": name, "trial_fn": label, "trial_fn_code": code, "grid": grid,
            "num_trials": int(num_trials), "chunk_size": int(chunk_size),
            "batch_size": None if batch_size is None else int(batch_size), "key": key_record,
            "x64": bool(jax.config.read("jax_enable_x64")), "backend": jax.default_backend(), "jax": jax.__version__}


def _write_results(folder: Path | None, arrays, records, meta) -> None:
    if folder is not None and jax.process_index() == 0:
        rec.save_arrays(folder / "arrays.npz", arrays)
        rec.write_json(folder / "records.json", records)
        rec.write_json(folder / "meta.json", meta)


def sweep(
    trial_fn: Callable[..., Mapping[str, jax.Array]],
    grid: Mapping[str, Sequence[Any]],
    *,
    num_trials: int,
    key: Any = 0,
    chunk_size: int = 256,
    batch_size: int | None = None,
    out_dir: str | Path | None = None,
    name: str = "sweep",
    on_mismatch: str = "raise",
    progress: bool | None = None,
    devices: Sequence[jax.Device] | None = None,  # pyright: ignore[reportInvalidTypeForm]  # untyped alias of a compiled class
    mesh: Mesh | None = None,
) -> SweepResult:
    """Run `trial_fn` over every grid point and `num_trials` trials (see module docstring).

    Args:
      trial_fn: `(key, **params) -> dict[str, array]`; pure, jit-able.
      grid: parameter name -> list of values (dict order = axis order of the result arrays).
      num_trials: trials per grid point. key: int seed or PRNG key.
      chunk_size: (grid point, trial) items per dispatch (and per checkpoint).
      batch_size: items vmapped at once inside a chunk (None: the whole chunk; on several CPU
        devices None means 1, see docs/troubleshooting.md).
      out_dir: folder for checkpoints and results (`out_dir/name/`); None keeps everything in memory.
      name: sweep name (sub-folder of out_dir).
      on_mismatch: when `out_dir/name/` holds a sweep of other settings or code (its manifest
        differs, trial function code fingerprint included) or chunks without a manifest: "raise"
        (default) raises ValueError listing what differs; "recompute" warns, deletes that sweep's
        files and computes afresh. Saved numbers of other settings or code are never returned.
      progress: show a progress bar over chunks (default: on unless JSPARSE_PROGRESS=0).
      devices: devices to split each chunk over (default: all devices).
      mesh: explicit device mesh with an axis named "trials" (instead of `devices`).

    Raises:
      ValueError: bad arguments, or a folder of other settings with `on_mismatch="raise"`.
      CorruptFileError: a saved chunk or manifest is damaged, replaced or foreign (names the file).
    """
    grid = _validate(grid, num_trials, chunk_size, batch_size)
    mesh = trial_mesh(devices, mesh)
    base_key, key_record = _as_key(key)
    plan = L.make_plan(grid, num_trials, chunk_size, batch_size, mesh, base_key)
    settings = _manifest(trial_fn, grid, num_trials, chunk_size, batch_size, key_record, name, out_dir is not None)
    folder, digest = store.open_folder(out_dir, name, settings, on_mismatch)
    n_static = len(plan.static_combos)
    done = store.count_chunks(folder, n_static, plan.n_chunks)
    bar = progress_bar(total=n_static * plan.n_chunks, desc=f"sweep {name}", enabled=progress, initial=done)
    timing = _Timing(digest, {}, [0.0], [0])
    try:
        per_static = [_run_static(trial_fn, plan, s, folder, bar, timing) for s in range(n_static)]
    finally:
        bar.close()
    arrays = L.assemble(plan, per_static)
    records = L.records(plan, arrays)
    computed = timing.computed[0]
    meta = dict(settings, environment=rec.environment(), chunks_computed=computed,
                chunks_loaded=n_static * plan.n_chunks - computed, compile_seconds=timing.compile_seconds,
                run_seconds=timing.run_seconds[0], dispatches=computed, device_count=int(mesh.shape[TRIAL_AXIS]))
    _write_results(folder, arrays, records, meta)
    return SweepResult(arrays, records, dict(grid), meta)
