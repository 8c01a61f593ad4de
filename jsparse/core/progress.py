"""Progress bars for long host-side loops (sweep chunks, training rounds).

A thin wrapper over tqdm: it never runs inside a jitted function (progress is reported
between dispatches, one tick per chunk or epoch). Set `JSPARSE_PROGRESS=0` to silence
every bar, e.g. in CI logs.
"""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

__all__ = ["progress", "progress_enabled"]


def progress_enabled(enabled: bool | None = None) -> bool:
    """Bars show unless `JSPARSE_PROGRESS=0` (or `enabled=False`)."""
    if enabled is not None:
        return enabled
    return os.environ.get("JSPARSE_PROGRESS", "1") not in ("0", "false", "False")


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    enabled: bool | None = None,
    initial: int = 0,
):
    """Return a tqdm bar over `iterable` (or a manual bar when `iterable` is None)."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        initial=initial,
        disable=not progress_enabled(enabled),
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    )
