"""On-disk format of an activation store, shared by the writer and the reader.

A store folder holds `manifest.json` (format, model, layer, dtype, d, shard_rows, with_ids, meta,
num_tokens, sum_sq_norm, mean_sq_norm, norm_scale, complete, cursor, shards) and, per shard i,
`shard_{i:05d}.npy` ((rows, d) in the store dtype) and, with ids, `ids_{i:05d}.npy` ((rows, 3)
int32). Each shard entry of the manifest: file, rows, crc32, sum_sq_norm (and ids_file,
ids_crc32).
"""
from __future__ import annotations

import io
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from jsparse.core import records

__all__ = ["MANIFEST", "FORMAT", "DTYPES", "shard_name", "ids_name", "save_npy", "file_crc32", "new_manifest",
           "add_shard", "read_manifest", "open_shard", "open_ids"]

MANIFEST = "manifest.json"
FORMAT = "jsparse-activations/1"
DTYPES = ("float32", "float16")


def shard_name(i: int) -> str:
    return f"shard_{i:05d}.npy"


def ids_name(i: int) -> str:
    return f"ids_{i:05d}.npy"


def save_npy(path: Path, arr: np.ndarray) -> int:
    """Write `arr` as `.npy` atomically (`records.atomic_write_bytes`); returns the crc32 of the bytes."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    data = buf.getbuffer()  # a view: the shard is held once in memory, not copied again
    try:
        records.atomic_write_bytes(path, data)
        return zlib.crc32(data)
    finally:
        data.release()


def file_crc32(path: Path, chunk: int = 1 << 24) -> int:
    """crc32 of a file's bytes, read in chunks."""
    crc = 0
    with open(path, "rb") as f:
        while b := f.read(chunk):
            crc = zlib.crc32(b, crc)
    return crc


def new_manifest(settings: dict) -> dict[str, Any]:
    """The manifest of an empty store with these settings (format, model, layer, dtype, d, ...)."""
    return dict(settings, num_tokens=0, sum_sq_norm=0.0, mean_sq_norm=None, norm_scale=None, complete=False,
                cursor=[0, 0], shards=[])


def add_shard(m: dict, entry: dict, next_cursor) -> None:
    """List a written shard in manifest `m`: totals, normalisation constant c = 1 / sqrt(mean ||x||^2)
    (unit mean squared norm), and the harvest cursor where the next shard starts."""
    m["shards"].append(entry)
    m["num_tokens"] += entry["rows"]
    m["sum_sq_norm"] += entry["sum_sq_norm"]
    m["mean_sq_norm"] = m["sum_sq_norm"] / m["num_tokens"]
    m["norm_scale"] = float(1.0 / np.sqrt(m["mean_sq_norm"])) if m["mean_sq_norm"] > 0 else 1.0
    m["cursor"] = [int(next_cursor[0]), int(next_cursor[1])]


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of the store folder `root`; ValueError naming the file when missing, unreadable
    or not an activation store's."""
    mpath = root / MANIFEST
    if not mpath.exists():
        raise ValueError(f"path: no {MANIFEST} in {root}")
    try:
        m = records.read_json(mpath)
    except Exception as err:
        raise ValueError(f"{mpath}: unreadable manifest ({err})") from None
    if m.get("format") != FORMAT:
        raise ValueError(f"{mpath}: not an activation store manifest (format {m.get('format')!r})")
    return m


def open_shard(root: Path, s: dict, d: int, dtype: str, verify: bool) -> np.ndarray:
    """Memory-map one shard, checking it against its manifest entry `s`; ValueError names the file."""
    f = root / s["file"]
    if not f.exists():
        raise ValueError(f"{f}: shard listed in {root / MANIFEST} is missing")
    try:
        arr = np.load(f, mmap_mode="r", allow_pickle=False)
    except Exception as err:  # bad magic/header, or data shorter than the header says
        raise ValueError(f"{f}: corrupt or truncated shard ({type(err).__name__}: {err})") from None
    if arr.shape != (s["rows"], d) or str(arr.dtype) != dtype:
        raise ValueError(f"{f}: shard holds {arr.shape} {arr.dtype}, the manifest {root / MANIFEST} says "
                         f"({s['rows']}, {d}) {dtype}")
    if verify and file_crc32(f) != s["crc32"]:
        raise ValueError(f"{f}: checksum mismatch (corrupt shard)")
    return arr


def open_ids(root: Path, s: dict) -> np.ndarray:
    """Memory-map the (rows, 3) int32 ids file of shard entry `s`; ValueError names the file."""
    f = root / s["ids_file"]
    try:
        a = np.load(f, mmap_mode="r", allow_pickle=False)
    except Exception as err:
        raise ValueError(f"{f}: corrupt or truncated ids file ({err})") from None
    if a.shape != (s["rows"], 3):
        raise ValueError(f"{f}: holds {a.shape}, manifest says ({s['rows']}, 3)")
    return a
