"""The folder of a resumable Monte Carlo sweep: its manifest, its sealed chunks, and their checks.

Layout of `out_dir/name/`:

* `manifest.json` -- every setting the results depend on: the trial function's name and code
  fingerprint (`jsparse.core.code_fingerprint`), the grid, `num_trials`, `key`, `chunk_size`,
  `batch_size`, the 64-bit mode, the backend and the JAX version. Written before the first chunk.
* `chunks/staticSSS_chunkCCCCC.npz` -- one file per finished chunk, written atomically by
  `records.save_arrays` (SHA-256 of its arrays stored inside) with a *seal*: a SHA-256 over the
  manifest's digest, the chunk's position and the arrays' checksum. A chunk is only used when
  its checksum and its seal both hold, so a damaged file, a file of other values, a chunk
  written for other settings or moved to another position raises `CorruptFileError` naming it.

Used by `jsparse.core.montecarlo`; kept apart so the sweep itself reads as its loop.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jsparse.core import records as rec
from jsparse.core.errors import CorruptFileError

__all__ = ["ON_MISMATCH", "manifest_digest", "chunk_path", "save_chunk", "load_chunk", "open_folder",
           "read_manifest", "count_chunks"]

ON_MISMATCH = ("raise", "recompute")
MANIFEST = "manifest.json"
SEAL = "__sweep_chunk__"
_RESULT_FILES = ("arrays.npz", "records.json", "meta.json")


def manifest_digest(manifest: Any) -> str:
    """SHA-256 (hex) of a manifest in its JSON form (what is stored in `manifest.json`)."""
    return rec.fingerprint(rec.to_builtin(manifest), length=64)


def chunk_path(folder: Path, s: int, c: int) -> Path:
    """File of chunk `c` of static combination `s`."""
    return folder / "chunks" / f"static{s:03d}_chunk{c:05d}.npz"


def count_chunks(folder: Path | None, n_static: int, n_chunks: int) -> int:
    """How many of the sweep's chunk files exist (0 without a folder)."""
    if folder is None:
        return 0
    return sum(1 for s in range(n_static) for c in range(n_chunks) if chunk_path(folder, s, c).exists())


def _seal(digest: str, s: int, c: int, arrays: dict) -> str:
    return hashlib.sha256(f"{digest}|{s}|{c}|{rec.checksum(arrays)}".encode()).hexdigest()


def save_chunk(path: Path, digest: str, s: int, c: int, arrays: dict[str, np.ndarray]) -> None:
    """Write one chunk atomically, with its checksum and its seal for this sweep and position."""
    if SEAL in arrays:
        raise ValueError(f"trial_fn: the output name {SEAL!r} is reserved")
    rec.save_arrays(path, {**arrays, SEAL: np.asarray(_seal(digest, s, c, arrays))})


def load_chunk(path: Path, digest: str, s: int, c: int) -> dict[str, np.ndarray]:
    """The arrays of a chunk written by `save_chunk` for the same sweep and position.

    Raises:
      CorruptFileError: the file is truncated or empty, fails its checksum, or carries no seal or
        the seal of another sweep or position (replaced, copied or moved).
    """
    arrays = rec.load_arrays(path, "sweep chunk")
    seal = arrays.pop(SEAL, None)
    if seal is None or str(seal) != _seal(digest, s, c, arrays):
        raise CorruptFileError(path, f"not a chunk written by this sweep for position (static {s}, chunk {c}): "
                                     "replaced, moved, or computed with other settings; delete it to recompute it")
    return arrays


def read_manifest(folder: Path) -> dict | None:
    """The saved manifest of the sweep in `folder` (None when there is none)."""
    path = folder / MANIFEST
    if not path.exists():
        return None
    saved = rec.read_json(path, "sweep manifest")
    if not isinstance(saved, dict):
        raise CorruptFileError(path, f"sweep manifest holds a {type(saved).__name__}, not an object")
    return saved


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def differences(saved: dict, wanted: dict) -> list[str]:
    """One line per setting whose saved and wanted values differ."""
    lines = []
    for k in sorted(set(saved) | set(wanted), key=str):
        if saved.get(k) != wanted.get(k):
            lines.append(f"{k}: saved {_short(saved.get(k, '<absent>'))}, now {_short(wanted.get(k, '<absent>'))}")
    return lines


def _clear(folder: Path) -> None:
    """Delete the files a sweep writes in `folder` (its chunks, manifest and results); nothing else."""
    if jax.process_index() == 0:
        chunks = folder / "chunks"
        for path in [*chunks.glob("static*_chunk*.npz"), *chunks.glob(".static*_chunk*.npz.*.tmp")]:
            path.unlink(missing_ok=True)
        for name in (MANIFEST, *_RESULT_FILES):
            (folder / name).unlink(missing_ok=True)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"jsparse sweep clear {folder}")


def _problem(folder: Path, manifest: dict) -> str | None:
    """Why the saved results in `folder` cannot be reused for `manifest` (None when they can)."""
    saved = read_manifest(folder)
    if saved is None:
        has_chunks = any((folder / "chunks").glob("static*_chunk*.npz"))
        return (f"out_dir: {folder} holds sweep chunks but no {MANIFEST}, so the settings they were computed "
                "with are unknown") if has_chunks else None
    diff = differences(saved, rec.to_builtin(manifest))
    return (f"out_dir: {folder} holds a sweep with other settings ({'; '.join(diff)})") if diff else None


def open_folder(out_dir: str | Path | None, name: str, manifest: dict, on_mismatch: str) -> tuple[Path | None, str]:
    """The sweep's folder with its manifest checked (or written), and the manifest's digest.

    With saved results of other settings (or chunks without a manifest): `on_mismatch="raise"`
    raises ValueError saying what differs; `"recompute"` warns (UserWarning, saying what differs)
    and deletes the sweep's files there first.
    Returns `(None, digest)` without `out_dir`.
    """
    if on_mismatch not in ON_MISMATCH:
        raise ValueError(f"on_mismatch: expected one of {ON_MISMATCH}, got {on_mismatch!r}")
    digest = manifest_digest(manifest)
    if out_dir is None:
        return None, digest
    folder = Path(out_dir) / name
    problem = _problem(folder, manifest)
    if problem is not None:
        if on_mismatch == "raise":
            raise ValueError(f"{problem}. Nothing was read or overwritten. Pass on_mismatch='recompute' to delete "
                             "that sweep's files and compute afresh, or use another out_dir or name.")
        warnings.warn(f"{problem}; deleting its files and recomputing (on_mismatch='recompute')", UserWarning,
                      stacklevel=3)
        _clear(folder)
    if not (folder / MANIFEST).exists() and jax.process_index() == 0:
        rec.write_json(folder / MANIFEST, manifest)
    return folder, digest
