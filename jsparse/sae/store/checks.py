"""Checks on reading an activation store: the manifest's fields, each shard's header, shape and
size, and the checksums the writer recorded.

Every damaged file raises `jsparse.CorruptFileError` naming it and the fault: a manifest that is
not JSON, lacks a field or holds a field of the wrong type; a shard or ids file the manifest lists
that is missing, truncated, of another shape or dtype, or whose bytes fail the recorded checksum.
A folder without `manifest.json` is not a store: ValueError naming the folder.

Checksums: stores record a SHA-256 (`sha256`, `ids_sha256`) and a crc32 (`crc32`, `ids_crc32`) of
every file's bytes. Stores written before SHA-256 was recorded have the crc32 only; a file is
checked against the SHA-256 when the manifest has it, else against the crc32 (what can be
verified is verified).

Verification levels (`verify_mode`): "full" hashes every shard when the store is opened; "lazy"
hashes each shard the first time its rows are read through the store object; "size" checks only
headers, shapes, dtypes and file sizes (no hashing).
"""
from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from jsparse.core import records
from jsparse.core.errors import CorruptFileError

from .layout import DTYPES, FORMAT, MANIFEST

__all__ = ["VERIFY", "verify_mode", "check_manifest", "read_manifest", "open_shard", "open_ids", "check_bytes",
           "check_totals", "file_sha256", "file_crc32"]

VERIFY = ("full", "lazy", "size")
_NUMBER = (int, float)


def verify_mode(verify: bool | str) -> str:
    """"full", "lazy" or "size" from a `verify` argument (True = "full", False = "size")."""
    if verify is True or verify is False:
        return "full" if verify else "size"
    if verify not in VERIFY:
        raise ValueError(f"verify: expected True, False, 'full', 'lazy' or 'size', got {verify!r}")
    return str(verify)


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_crc32(path: Path, chunk: int = 1 << 24) -> int:
    """crc32 of a file's bytes, read in chunks."""
    crc = 0
    with open(path, "rb") as f:
        while b := f.read(chunk):
            crc = zlib.crc32(b, crc)
    return crc


def _field(where: Path, obj: dict, key: str, types: tuple, what: str, prefix: str = "") -> Any:
    """obj[key] if it exists and has one of `types` (a JSON true/false is not a number); else CorruptFileError."""
    name = prefix + key
    if key not in obj:
        raise CorruptFileError(where, f"missing field {name!r}")
    v = obj[key]
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
        raise CorruptFileError(where, f"field {name!r} is {v!r}, expected {what}")
    return v


def _check_shard_entry(mpath: Path, i: int, s: Any, with_ids: bool) -> None:
    """CorruptFileError unless shard entry `s` has a bare file name, rows >= 0 and checksums of the right type."""
    p = f"shards[{i}]."
    if not isinstance(s, dict):
        raise CorruptFileError(mpath, f"shards[{i}] is {s!r}, expected an object")
    names = [("file", "crc32", "sha256")] + ([("ids_file", "ids_crc32", "ids_sha256")] if with_ids else [])
    for name_key, crc_key, sha_key in names:
        name = _field(mpath, s, name_key, (str,), "a file name", p)
        if Path(name).name != name or name in ("", ".", ".."):
            raise CorruptFileError(mpath, f"field {p + name_key!r} is {name!r}, not a file name inside the store")
        _field(mpath, s, crc_key, (int,), "an integer crc32", p)
        if sha_key in s and not (isinstance(s[sha_key], str) and len(s[sha_key]) == 64):
            raise CorruptFileError(mpath, f"field {p + sha_key!r} is {s[sha_key]!r}, expected a hex SHA-256")
    if _field(mpath, s, "rows", (int,), "an integer", p) < 0:
        raise CorruptFileError(mpath, f"field {p + 'rows'!r} is {s['rows']}, expected >= 0")
    _field(mpath, s, "sum_sq_norm", _NUMBER, "a number", p)


def check_manifest(mpath: Path, m: Any) -> dict[str, Any]:
    """`m` if it is a complete activation-store manifest; CorruptFileError naming `mpath` and the bad field."""
    if not isinstance(m, dict):
        raise CorruptFileError(mpath, f"holds a {type(m).__name__}, expected a JSON object")
    if m.get("format") != FORMAT:
        raise CorruptFileError(mpath, f"not an activation store manifest (format {m.get('format')!r}, "
                                      f"expected {FORMAT!r})")
    if _field(mpath, m, "dtype", (str,), "a string") not in DTYPES:
        raise CorruptFileError(mpath, f"field 'dtype' is {m['dtype']!r}, expected one of {DTYPES}")
    for key in ("d", "shard_rows"):
        if _field(mpath, m, key, (int,), "an integer") < 1:
            raise CorruptFileError(mpath, f"field {key!r} is {m[key]}, expected >= 1")
    if _field(mpath, m, "num_tokens", (int,), "an integer") < 0:
        raise CorruptFileError(mpath, f"field 'num_tokens' is {m['num_tokens']}, expected >= 0")
    _field(mpath, m, "model", (str,), "a string")
    _field(mpath, m, "layer", (int, str), "an integer or a string")
    _field(mpath, m, "meta", (dict,), "an object")
    _field(mpath, m, "sum_sq_norm", _NUMBER, "a number")
    _field(mpath, m, "mean_sq_norm", (*_NUMBER, type(None)), "a number or null")
    _field(mpath, m, "norm_scale", (*_NUMBER, type(None)), "a number or null")
    _field(mpath, m, "complete", (bool,), "true or false")
    with_ids = _field(mpath, m, "with_ids", (bool,), "true or false")
    cursor = _field(mpath, m, "cursor", (list,), "[item, row]")
    if len(cursor) != 2 or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cursor):
        raise CorruptFileError(mpath, f"field 'cursor' is {cursor!r}, expected [item, row] (integers >= 0)")
    for i, s in enumerate(_field(mpath, m, "shards", (list,), "a list")):
        _check_shard_entry(mpath, i, s, with_ids)
    return m


def read_manifest(root: Path) -> dict[str, Any]:
    """The checked manifest of the store folder `root`.

    Raises:
      ValueError: `root` holds no manifest.json (it is not a store).
      CorruptFileError: the manifest is not JSON, not a store manifest, or misses or mistypes a field.
    """
    mpath = Path(root) / MANIFEST
    if not mpath.is_file():
        raise ValueError(f"path: no {MANIFEST} in {root}")
    return check_manifest(mpath, records.read_json(mpath, "activation store manifest"))


def _open_npy(root: Path, name: str, what: str) -> np.ndarray:
    """Memory-map the `.npy` file `root / name` (listed in the manifest); CorruptFileError when it is
    missing, unreadable, or its size differs from what its header implies."""
    f = root / name
    if not f.is_file():
        raise CorruptFileError(f, f"{what} listed in {root / MANIFEST} is missing")
    try:
        arr = np.load(f, mmap_mode="r", allow_pickle=False)
    except Exception as err:  # bad magic/header, or data shorter than the header says
        raise CorruptFileError(f, f"corrupt or truncated {what} ({type(err).__name__}: {err})") from None
    size = os.path.getsize(f)
    if not isinstance(arr, np.memmap) or size != arr.offset + arr.nbytes:
        raise CorruptFileError(f, f"corrupt {what}: {size} bytes, its header implies "
                                  f"{getattr(arr, 'offset', 0) + arr.nbytes}")
    return arr


def open_shard(root: Path, s: dict, d: int, dtype: str) -> np.ndarray:
    """Memory-map one shard, checking header, shape, dtype and size against its manifest entry `s`
    (no hashing: `check_bytes` does that)."""
    arr = _open_npy(root, s["file"], "shard")
    if arr.shape != (s["rows"], d) or str(arr.dtype) != dtype:
        raise CorruptFileError(root / s["file"], f"shard holds {arr.shape} {arr.dtype}, the manifest "
                                                 f"{root / MANIFEST} says ({s['rows']}, {d}) {dtype}")
    return arr


def open_ids(root: Path, s: dict) -> np.ndarray:
    """Memory-map the (rows, 3) int32 ids file of shard entry `s`, checking header, shape and size."""
    a = _open_npy(root, s["ids_file"], "ids file")
    if a.shape != (s["rows"], 3) or a.dtype != np.int32:
        raise CorruptFileError(root / s["ids_file"], f"holds {a.shape} {a.dtype}, the manifest {root / MANIFEST} "
                                                     f"says ({s['rows']}, 3) int32")
    return a


def check_bytes(root: Path, s: dict, ids: bool = False) -> None:
    """Hash the shard (or, with ids, the ids file) of entry `s` and compare with the manifest:
    SHA-256 when recorded, else crc32. CorruptFileError naming the file on a mismatch."""
    name, sha_key, crc_key = ("ids_file", "ids_sha256", "ids_crc32") if ids else ("file", "sha256", "crc32")
    f = root / s[name]
    try:
        if sha_key in s:
            ok, kind = file_sha256(f) == s[sha_key], "SHA-256"
        else:
            ok, kind = file_crc32(f) == s[crc_key], "crc32"
    except FileNotFoundError:
        raise CorruptFileError(f, f"listed in {root / MANIFEST} but missing") from None
    if not ok:
        raise CorruptFileError(f, f"fails the {kind} checksum recorded in {root / MANIFEST} "
                                  "(changed after it was written)")


def check_totals(root: Path, m: dict) -> None:
    """CorruptFileError naming the manifest when its num_tokens is not the sum of its shards' rows."""
    rows = sum(s["rows"] for s in m["shards"])
    if rows != m["num_tokens"]:
        raise CorruptFileError(root / MANIFEST, f"num_tokens {m['num_tokens']} != {rows} rows in the shards")
