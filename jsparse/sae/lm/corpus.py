"""A text corpus that needs no download: the running interpreter's standard-library sources.

Files are the `.py` files under `sysconfig.get_paths()["stdlib"]` (site-packages excluded),
in sorted relative-path order. The split is by file, deterministic and independent of the
file order: a file is in the test split when crc32(relative path) % 100 < test_percent.
Each file is cut into chunks of whole lines of at most `chunk_chars` characters (a longer
line is cut), the unit a harvest feeds to the tokenizer (about one 128-token window of code).
The corpus therefore depends only on the Python version (recorded by `describe`).
"""
from __future__ import annotations

import os
import sys
import sysconfig
import zlib
from pathlib import Path
from typing import Iterator

__all__ = ["stdlib_root", "source_files", "chunks", "describe"]


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in ("site-packages", "dist-packages", "__pycache__")]
        for f in filenames:
            if f.endswith(".py"):
                yield Path(dirpath) / f


def source_files(split: str = "train", test_percent: int = 10, root: Path | None = None) -> list[Path]:
    """Sorted `.py` files of the split ("train", "test" or "all")."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split: expected 'train', 'test' or 'all', got {split!r}")
    if not 0 <= test_percent <= 100:
        raise ValueError(f"test_percent: expected 0..100, got {test_percent}")
    root = stdlib_root() if root is None else Path(root)
    out = []
    for p in sorted(_walk(root)):
        rel = p.relative_to(root).as_posix()
        is_test = zlib.crc32(rel.encode()) % 100 < test_percent
        if split == "all" or (split == "test") == is_test:
            out.append(p)
    return out


def _file_chunks(text: str, chunk_chars: int) -> Iterator[str]:
    buf = ""
    for line in text.splitlines(keepends=True):
        while len(line) > chunk_chars:  # a very long line: emit what is buffered, then cut it
            if buf.strip():
                yield buf
            buf, line = line[:chunk_chars], line[chunk_chars:]
        if len(buf) + len(line) > chunk_chars:
            if buf.strip():
                yield buf
            buf = ""
        buf += line
    if buf.strip():
        yield buf


def chunks(split: str = "train", chunk_chars: int = 512, test_percent: int = 10, root: Path | None = None,
           max_chunks: int | None = None) -> Iterator[str]:
    """Deterministic non-blank text chunks of the split, file by file (at most max_chunks)."""
    if chunk_chars < 16:
        raise ValueError(f"chunk_chars: expected >= 16, got {chunk_chars}")
    n = 0
    for f in source_files(split, test_percent, root):
        for c in _file_chunks(f.read_text(encoding="utf-8", errors="replace"), chunk_chars):
            if max_chunks is not None and n >= max_chunks:
                return
            yield c
            n += 1


def describe(split: str = "train", test_percent: int = 10) -> dict:
    """Provenance for manifests: python version, stdlib root, split, number of files."""
    return dict(corpus="python-stdlib", python=sys.version.split()[0], root=str(stdlib_root()), split=split,
                test_percent=test_percent, files=len(source_files(split, test_percent)))
