"""The one error type for files jsparse cannot trust.

Every reader in jsparse (sweep chunks and manifests, checkpoints, activation stores, SAELens
folders, hyperspectral scenes) raises `CorruptFileError` when a file exists but cannot be used:
truncated, not the format it claims, failing its checksum, or missing a field. It subclasses
`ValueError`, so code that already catches bad input keeps working; the message names the path
and what is wrong. A missing file stays `FileNotFoundError`.
"""
from __future__ import annotations

import contextlib
import json
import os
import zipfile
import zlib
from typing import Iterator

__all__ = ["CorruptFileError", "reading"]


class CorruptFileError(ValueError):
    """A file exists but cannot be used; `path` names it and `reason` says why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across processes (ValueError's default passes one arg)
        return (type(self), (self.path, self.reason))


# What the standard readers raise on a damaged file (np.load raises ValueError/OSError on
# garbage, zipfile BadZipFile on truncation, EOFError on an empty file).
_DAMAGE = (
    zipfile.BadZipFile,
    EOFError,
    json.JSONDecodeError,
    UnicodeDecodeError,
    zlib.error,
    KeyError,
    IndexError,
    TypeError,
    ValueError,
)


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str = "file") -> Iterator[None]:
    """Turn any decoding failure while reading `path` into `CorruptFileError`.

    `FileNotFoundError` passes through unchanged, and so does a `CorruptFileError` raised
    inside (it already names its file).
    """
    try:
        yield
    except (CorruptFileError, FileNotFoundError):
        raise
    except _DAMAGE as err:
        raise CorruptFileError(path, f"unreadable {what} ({type(err).__name__}: {err})") from err
    except OSError as err:
        if isinstance(err, (IsADirectoryError, PermissionError)):
            raise
        raise CorruptFileError(path, f"unreadable {what} ({type(err).__name__}: {err})") from err
