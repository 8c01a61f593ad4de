"""On-disk format of an activation store, shared by the writer and the reader.

A store folder holds `manifest.json` (format, model, layer, dtype, d, shard_rows, with_ids, meta,
num_tokens, sum_sq_norm, mean_sq_norm, norm_scale, complete, cursor, shards) and, per shard i,
`shard_{i:05d}.npy` ((rows, d) in the store dtype) and, with ids, `ids_{i:05d}.npy` ((rows, 3)
int32). Each shard entry of the manifest: file, rows, crc32, sha256, sum_sq_norm (and ids_file,
ids_crc32, ids_sha256), the checksums taken over the file's bytes. (Stores written before the
SHA-256 was recorded lack sha256 and ids_sha256; `checks` then verifies the crc32.)
"""
from __future__ import annotations

import hashlib
import io
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from jsparse.core import records

__all__ = ["MANIFEST", "FORMAT", "DTYPES", "shard_name", "ids_name", "save_npy", "new_manifest", "add_shard"]

MANIFEST = "manifest.json"
FORMAT = "jsparse-activations/1"
DTYPES = ("float32", "float16")


def shard_name(i: int) -> str:
    return f"shard_{i:05d}.npy"


def ids_name(i: int) -> str:
    return f"ids_{i:05d}.npy"


def save_npy(path: Path, arr: np.ndarray) -> tuple[int, str]:
    """Write `arr` as `.npy` atomically (`records.atomic_write_bytes`); returns the crc32 and the
    SHA-256 (hex) of the bytes written."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    data = buf.getbuffer()  # a view: the shard is held once in memory, not copied again
    try:
        records.atomic_write_bytes(path, data)
        return zlib.crc32(data), hashlib.sha256(data).hexdigest()
    finally:
        data.release()


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
