"""Checkpoints of `train`: the whole train state and the history so far, plus the run's settings.

A checkpoint folder holds `state.npz` (the (TrainState, history) leaves, each with its exact dtype
and shape, and the run's settings, in one atomically written file) and `meta.json` (the same
settings, readable). A re-run with the same settings resumes from it. Settings that differ (the
method and every one of its settings, width, steps, data shape, learning rate, dtype, key, ...)
raise ValueError naming `checkpoint_dir` and the settings; a damaged file raises
`jsparse.CorruptFileError`. `clear(folder)` removes a run's checkpoint files (start over).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsparse.core import records
from jsparse.core import validation as val
from jsparse.core.errors import CorruptFileError

from .methods import Method

__all__ = ["Checkpoint", "as_checkpoint", "run_meta", "restore", "save", "clear", "FILES"]

FILES = ("state.npz", "meta.json")
_META_KEY = "meta"


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Write to folder `path` every `every` steps (and at the end); `resume`: continue from it."""

    path: Path
    every: int = 500
    resume: bool = True

    def __post_init__(self):
        if not isinstance(self.path, (str, Path)):
            raise ValueError(f"checkpoint: expected a folder path, got {self.path!r}")
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "every", val.check_int(self.every, "checkpoint_every", minimum=1))


def as_checkpoint(checkpoint, checkpoint_dir=None, checkpoint_every: int = 500, resume: bool = True):
    """A `Checkpoint` or None from `train`'s `checkpoint` (a Checkpoint or a folder) or the
    keyword form `checkpoint_dir` / `checkpoint_every` / `resume`."""
    val.check_int(checkpoint_every, "checkpoint_every", minimum=1)
    if checkpoint is not None and checkpoint_dir is not None:
        raise ValueError("checkpoint: give either checkpoint or checkpoint_dir, not both")
    if isinstance(checkpoint, Checkpoint):
        return checkpoint
    folder = checkpoint if checkpoint is not None else checkpoint_dir
    return None if folder is None else Checkpoint(folder, checkpoint_every, bool(resume))


def _settings(method: Method) -> dict[str, Any]:
    """Every setting of a method value (its dataclass fields), JSON-ready."""
    if dataclasses.is_dataclass(method):
        return {f.name: records.to_builtin(getattr(method, f.name)) for f in dataclasses.fields(method)}
    return {"repr": repr(method)}


def run_meta(method: Method, *, width: int, steps: int, d: int, batch_size: int, log_every: int, dead_steps: int,
             scale_warmup: int, lr: float, dtype, normalize: bool = True, key=None) -> dict[str, Any]:
    """The settings a checkpoint must match to resume: the run's, and `method_settings` (every
    field of the method value). `opts` keeps the layout of earlier versions."""
    opts: dict[str, Any] = dict(method=method.name, k=None, l1=3e-2, l0=1e-2, aux_coef=1 / 32,
                                aux_k=min(max(d // 2, 1), width), dead_steps=dead_steps, threshold_rate=0.01,
                                adapt=True)
    opts.update(method.legacy_options())
    if scale_warmup:
        opts["scale_warmup"] = scale_warmup
    meta = dict(method=method.name, width=width, steps=steps, d=d, batch_size=batch_size, log_every=log_every,
                opts=opts, lr=lr, dtype=str(jnp.dtype(dtype)), method_settings=_settings(method),
                normalize=bool(normalize))
    if key is not None:
        k = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
        meta["key"] = np.asarray(k).tolist()
    bias_init = getattr(method, "bias_init", "zero")
    if bias_init != "zero":
        meta["bias_init"] = bias_init
    return json.loads(json.dumps(records.to_builtin(meta)))


def _differences(saved: dict, meta: dict) -> list[str]:
    keys = sorted(set(saved) | set(meta))
    out = [k for k in keys if k not in ("opts", "method_settings") and saved.get(k) != meta.get(k)]
    a, b = saved.get("method_settings") or {}, meta.get("method_settings") or {}
    out += [f"{k} ({a.get(k)!r} saved, {b.get(k)!r} now)" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return out


def _read(path: Path) -> tuple[dict | None, dict[str, np.ndarray]]:
    """(the settings stored in the file, or None in files of earlier versions; its arrays)."""
    data = records.load_arrays(path, "checkpoint")
    stored = data.pop(_META_KEY, None)
    with records.reading(path, "checkpoint settings"):
        stored = None if stored is None else json.loads(str(stored))
    return stored, data


def _unflatten(path: Path, data: dict[str, np.ndarray], template):
    """The arrays in the structure of `template`, each with its saved dtype and shape (NumPy
    leaves of the template stay NumPy, the others become jax arrays)."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    keys = sorted(data)
    if len(keys) != len(leaves):
        raise CorruptFileError(path, f"holds {len(keys)} arrays, this run's state has {len(leaves)}")
    out = []
    for key, ref in zip(keys, leaves):
        arr, want = data[key], np.asarray(ref)
        if arr.shape != want.shape or arr.dtype != want.dtype:
            raise CorruptFileError(path, f"{key} has shape {arr.shape} dtype {arr.dtype}, "
                                         f"expected {want.shape} {want.dtype}")
        out.append(arr if isinstance(ref, np.ndarray) else jnp.asarray(arr, dtype=arr.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)


def _legacy_meta(folder: Path) -> dict:
    """The settings of a checkpoint written before they were stored in state.npz: meta.json."""
    if not (folder / "meta.json").exists():
        raise CorruptFileError(folder / "state.npz", "holds no settings and meta.json is missing beside it")
    saved = records.read_json(folder / "meta.json", "checkpoint settings")
    if not isinstance(saved, dict):
        raise CorruptFileError(folder / "meta.json", "expected a JSON object of settings")
    return saved


def restore(ckpt: Checkpoint | None, meta: dict, template):
    """The saved (state, history) shaped like `template`, or None when there is nothing to resume.

    Raises ValueError (naming checkpoint_dir and the settings) when the checkpoint is another
    run's, and CorruptFileError when a file is damaged."""
    if ckpt is None or not ckpt.resume or not (ckpt.path / "state.npz").exists():
        return None
    stored, data = _read(ckpt.path / "state.npz")
    # The settings inside state.npz are authoritative: meta.json is a readable copy written just
    # after it, so a crash between the two leaves it stale or absent, and that is not damage.
    saved = stored if stored is not None else _legacy_meta(ckpt.path)
    if "method_settings" not in saved:
        raise ValueError(f"checkpoint_dir: {ckpt.path} was written by an earlier version that did not record "
                         "every method setting, so resuming it cannot be checked; start over (resume=False, "
                         "or `jsparse sae train --fresh`)")
    diff = _differences(saved, meta)
    if diff:
        raise ValueError(f"checkpoint_dir: {ckpt.path} holds a run with different settings: {', '.join(diff)}; "
                         "use another folder or start over (resume=False, or `jsparse sae train --fresh`)")
    return _unflatten(ckpt.path / "state.npz", data, template)


def save(ckpt: Checkpoint, meta: dict, state, history: dict) -> None:
    """Write (state, history) with `meta` into one file (atomic), then meta.json (a readable copy)."""
    leaves = jax.tree_util.tree_leaves((state, history))
    arrays: dict[str, Any] = {f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)}
    arrays[_META_KEY] = np.asarray(json.dumps(meta, sort_keys=True))
    records.save_arrays(ckpt.path / "state.npz", arrays)
    records.write_json(ckpt.path / "meta.json", meta)


def clear(folder: str | Path) -> list[Path]:
    """Remove a run's checkpoint files (`FILES`) from `folder`, nothing else; returns those removed."""
    removed = []
    for name in FILES:
        p = Path(folder) / name
        if p.is_file():
            p.unlink()
            removed.append(p)
    return removed
