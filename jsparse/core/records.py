"""Records and checkpoints: atomic files that survive a crash mid-write.

* `environment()` — the facts a result needs to be reproducible (versions, backend, devices).
* `write_json` / `read_json` — atomic JSON with NumPy/JAX values converted to plain Python.
* `save_arrays` / `load_arrays` — named arrays in one `.npz`, written atomically (every writer of
  arrays in jsparse and its experiments uses these two).
* `save_pytree` / `load_pytree` — a pytree of arrays in one `.npz`, written atomically, read
  back into the structure of a template (so a resumed run gets exactly the saved arrays).

Integrity: `save_arrays` stores a SHA-256 of every array (name, dtype, shape, bytes) beside
them, and `load_arrays` checks it, so a file overwritten with other same-shape values is refused.
Every reader raises `jsparse.CorruptFileError` (a `ValueError`) naming the file when it is
truncated, not the format it claims, or fails its checksum.

Atomicity: every file is written to a temporary name in the same folder and moved into place
with `os.replace`, so a run killed at any instant leaves either the old file or the new one,
never a truncated one.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from jsparse.core.errors import CorruptFileError, reading

__all__ = [
    "CorruptFileError",
    "fingerprint",
    "checksum",
    "environment",
    "to_builtin",
    "atomic_write_bytes",
    "write_json",
    "read_json",
    "save_arrays",
    "load_arrays",
    "save_pytree",
    "load_pytree",
]


def environment() -> dict[str, Any]:
    """Versions and hardware facts recorded beside every result."""
    import flax
    import optax

    devices = jax.devices()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", None) or _jaxlib_version(),
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_count": len(devices),
        "x64": bool(jax.config.read("jax_enable_x64")),
    }


def _jaxlib_version() -> str | None:
    try:
        from jaxlib.version import __version__

        return __version__
    except Exception:  # pragma: no cover - informational only
        return None


def to_builtin(obj: Any) -> Any:
    """Convert NumPy/JAX scalars and arrays (and containers of them) to JSON-ready Python.

    Non-finite floats become `None` (JSON has no NaN); tuples become lists.
    """
    if isinstance(obj, dict):
        return {str(k): to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_builtin(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (jax.Array, np.ndarray, np.generic)):
        arr = np.asarray(obj)
        if np.iscomplexobj(arr):
            return to_builtin({"real": np.real(arr), "imag": np.imag(arr)})
        return to_builtin(arr.tolist()) if arr.ndim else to_builtin(arr.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    """Write `data` to `path` atomically (temp file in the same folder + `os.replace`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write `obj` as indented JSON (NumPy/JAX values converted)."""
    text = json.dumps(to_builtin(obj), indent=2, sort_keys=False)
    atomic_write_bytes(path, (text + "\n").encode())


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """The parsed JSON at `path`; `CorruptFileError` if it is truncated or not JSON."""
    with reading(path, what), open(path, encoding="utf-8") as f:
        return json.load(f)


_CHECKSUM_KEY = "__sha256__"


def checksum(arrays: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over the names, dtypes, shapes and bytes of `arrays`, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(np.asarray(arrays[name]))
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, Any]) -> None:
    """Save named arrays (NumPy/JAX arrays or scalars) to one `.npz`, atomically (no pickles),
    with their SHA-256 checksum (see `checksum`) stored beside them."""
    named: dict[str, Any] = {str(k): np.asarray(v) for k, v in arrays.items()}
    if _CHECKSUM_KEY in named:
        raise ValueError(f"arrays: the name {_CHECKSUM_KEY!r} is reserved for the checksum")
    buf = io.BytesIO()
    payload: dict[str, Any] = {**named, _CHECKSUM_KEY: np.asarray(checksum(named))}
    np.savez(buf, **payload)
    atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: str | os.PathLike, what: str = "array file") -> dict[str, np.ndarray]:
    """The named arrays of a `.npz` written by `save_arrays` (read fully, file closed).

    Raises:
      CorruptFileError: the file is truncated, not an `.npz`, or its arrays do not match the
        checksum stored with them. (Files without a stored checksum are read unchecked.)
    """
    with reading(path, what), np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    stored = arrays.pop(_CHECKSUM_KEY, None)
    if stored is not None and str(stored) != checksum(arrays):
        raise CorruptFileError(path, f"{what} fails its checksum (changed after it was written)")
    return arrays


def save_pytree(path: str | os.PathLike, tree: Any) -> None:
    """Save the leaves of a pytree of arrays to one `.npz`, atomically.

    The structure is not pickled: `load_pytree` needs a template with the same structure
    (for example the freshly initialised state), which keeps checkpoints safe to load.
    """
    leaves = jax.tree_util.tree_leaves(tree)
    save_arrays(path, {f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)})


def load_pytree(path: str | os.PathLike, template: Any) -> Any:
    """Load a `.npz` written by `save_pytree` into the structure of `template`: JAX arrays where the
    template has JAX arrays, NumPy arrays (exact dtype, e.g. float64 without 64-bit mode) where it
    has NumPy arrays.

    Raises:
      CorruptFileError: the file is damaged, or its leaf count, shapes or dtypes differ from
        the template (the error names the file).
    """
    leaves, treedef = jax.tree_util.tree_flatten(template)
    data = load_arrays(path, "checkpoint")
    keys = sorted(data)
    if len(keys) != len(leaves):
        raise CorruptFileError(path, f"holds {len(keys)} arrays, the template has {len(leaves)} leaves")
    loaded = []
    for key, ref in zip(keys, leaves):
        arr = data[key]
        if arr.shape != np.shape(ref) or arr.dtype != np.asarray(ref).dtype:
            raise CorruptFileError(
                path, f"{key} has shape {arr.shape} dtype {arr.dtype}, expected {np.shape(ref)} {np.asarray(ref).dtype}"
            )
        loaded.append(arr)
    # A NumPy leaf comes back as NumPy: jnp.asarray would turn float64 into float32 when 64-bit
    # mode is off, and the next save would no longer match the template.
    out = [a if isinstance(ref, (np.ndarray, np.generic)) else jax.numpy.asarray(a) for a, ref in zip(loaded, leaves)]
    return jax.tree_util.tree_unflatten(treedef, out)


def fingerprint(settings: Any, arrays=(), length: int = 16) -> str:
    """Cache key: the first `length` hex digits of SHA-256 over the raw bytes of `arrays` (in
    order) and then `settings` as key-sorted JSON. Changes whenever the problem data or a setting
    does, so a cached result is never reused for other inputs."""
    h = hashlib.sha256()
    for arr in arrays:
        h.update(np.ascontiguousarray(np.asarray(arr)).tobytes())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:length]
