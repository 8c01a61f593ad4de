"""The Samson and Jasper Ridge scenes shipped with jsparse, and the SHA-256 of every known scene file.

`folder()` is where the bundled files lie (`samson/`, `jasper/`; see README.md here for their
source and citation). `SHA256SUMS` lists the checksum of each file of the three scenes, bundled or
downloaded (`urban/endK_groundTruth.mat` are fetched on demand by `jsparse.unmixing.download_dataset`).
A bundled file is checked against its checksum the first time a process reads it.
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from jsparse.core.errors import CorruptFileError

__all__ = ["folder", "checksums", "sha256_of", "verify_bundled"]

_VERIFIED: set[Path] = set()


def folder() -> Path:
    """The folder of the bundled scene files (holds `samson/` and `jasper/`)."""
    return Path(__file__).resolve().parent


@functools.cache
def checksums() -> dict[str, str]:
    """{'samson/samson_1.mat': sha256 hex, ...} for every known scene file (bundled or not)."""
    out = {}
    for line in (folder() / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            out[rel.strip().lstrip("*")] = digest.lower()
    return out


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_bundled(path: str | os.PathLike) -> Path:
    """Return `path`; if it is one of the bundled files, check its SHA-256 first (once per process).

    Raises:
      CorruptFileError: a bundled file whose bytes differ from its recorded checksum.
    """
    path = Path(path).resolve()
    try:
        rel = path.relative_to(folder()).as_posix()
    except ValueError:
        return path  # not bundled: the user's own copy or a verified download
    expected = checksums().get(rel)
    if expected is None or path in _VERIFIED:
        return path
    got = sha256_of(path)
    if got != expected:
        raise CorruptFileError(path, f"SHA-256 {got} differs from the recorded {expected} (damaged install; "
                                     "reinstall jsparse or download the scene with jsparse.unmixing.download_dataset)")
    _VERIFIED.add(path)
    return path
