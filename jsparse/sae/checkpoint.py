"""Checkpoints of `train`: the whole train state and the history so far, plus the run's settings.

A checkpoint folder holds `state.npz` ((TrainState, history) leaves, `records.save_pytree`) and
`meta.json` (the settings). A re-run with the same settings resumes from it; other settings raise
ValueError naming `checkpoint_dir`. The metadata layout is the one older checkpoints were written
with, so they still resume.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax.numpy as jnp

from jsparse.core import records
from jsparse.core import validation as val

from .methods import Method

__all__ = ["Checkpoint", "as_checkpoint", "run_meta", "restore", "save"]


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


def run_meta(method: Method, *, width: int, steps: int, d: int, batch_size: int, log_every: int, dead_steps: int,
             scale_warmup: int, lr: float, dtype) -> dict[str, Any]:
    """The settings a checkpoint must match to resume (the layout older checkpoints carry: the
    per-method options with every other method's defaults; scale_warmup 0 and bias_init "zero"
    omitted)."""
    opts: dict[str, Any] = dict(method=method.name, k=None, l1=3e-2, l0=1e-2, aux_coef=1 / 32,
                                aux_k=min(max(d // 2, 1), width), dead_steps=dead_steps, threshold_rate=0.01,
                                adapt=True)
    opts.update(method.legacy_options())
    if scale_warmup:
        opts["scale_warmup"] = scale_warmup
    meta = dict(method=method.name, width=width, steps=steps, d=d, batch_size=batch_size, log_every=log_every,
                opts=opts, lr=lr, dtype=str(jnp.dtype(dtype)))
    bias_init = getattr(method, "bias_init", "zero")
    if bias_init != "zero":
        meta["bias_init"] = bias_init
    return meta


def restore(ckpt: Checkpoint | None, meta: dict, template):
    """The saved (state, history) shaped like `template`, or None when there is nothing to resume."""
    if ckpt is None or not ckpt.resume or not (ckpt.path / "state.npz").exists():
        return None
    saved = records.read_json(ckpt.path / "meta.json")
    if saved != json.loads(json.dumps(records.to_builtin(meta))):
        raise ValueError(f"checkpoint_dir: {ckpt.path} holds a run with different settings")
    return records.load_pytree(ckpt.path / "state.npz", template)


def save(ckpt: Checkpoint, meta: dict, state, history: dict) -> None:
    records.write_json(ckpt.path / "meta.json", meta)
    records.save_pytree(ckpt.path / "state.npz", (state, history))
