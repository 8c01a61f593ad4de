"""Writing an activation store: `ActivationWriter` fills fixed-size shards, `harvest` drives it
over a sequence of source items and resumes after a crash.

Each full shard is written atomically (temp file + rename), then the manifest is rewritten
atomically, so a crash leaves every shard the manifest lists complete and valid. The manifest
records each file's SHA-256 (checked before a harvest resumes and when the store is read) and the
harvest cursor (the source item and the row within it where the next shard
starts), so that `harvest` resumes without recomputing finished items.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from jsparse.core import records

from . import checks, layout
from .reader import ActivationStore

__all__ = ["ActivationWriter", "harvest"]


class ActivationWriter:
    """Append activations (rows of d floats) to a store folder, shard by shard.

    Args:
      path: the store folder (created). d: feature dimension. dtype: "float32" or "float16".
      shard_rows: rows per shard (the last shard may be shorter). model, layer: provenance.
      meta: any extra JSON-able provenance. with_ids: also keep (doc, pos, token) per row.
      resume: reopen an existing unfinished store with the same settings (else ValueError). Every
        shard and ids file it lists is first checked against the checksum in its manifest
        (CorruptFileError naming a damaged or missing file; delete the store to harvest it again).
    """

    def __init__(self, path, d: int, *, dtype: str = "float32", shard_rows: int = 65536, model: str = "",
                 layer: int | str = "", meta: dict | None = None, with_ids: bool = False, resume: bool = True):
        if dtype not in layout.DTYPES:
            raise ValueError(f"dtype: expected one of {layout.DTYPES}, got {dtype!r}")
        if int(d) < 1 or int(shard_rows) < 1:
            raise ValueError(f"d and shard_rows must be >= 1, got d={d}, shard_rows={shard_rows}")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.settings: dict[str, Any] = dict(format=layout.FORMAT, model=str(model), layer=layer, dtype=dtype, d=int(d),
                             shard_rows=int(shard_rows), with_ids=bool(with_ids), meta=records.to_builtin(meta or {}))
        self.manifest: dict[str, Any] = layout.new_manifest(self.settings)
        if (self.path / layout.MANIFEST).exists():
            self.manifest = self._reopen(resume)
        self._buf: list[np.ndarray] = []
        self._ids: list[np.ndarray] = []
        self._rows = 0
        # the item being added and how many of its rows are written or buffered (resume: the cursor)
        self._item, self._item_rows = self.manifest["cursor"]

    def _reopen(self, resume: bool) -> dict[str, Any]:
        """The manifest of the store already at `path`, checked: same settings (else ValueError), and,
        when more rows will be appended, every listed shard and ids file verified against its
        checksum (CorruptFileError naming the damaged file)."""
        mpath = self.path / layout.MANIFEST
        old = checks.read_manifest(self.path)
        stored = {k: old.get(k) for k in self.settings}
        if not resume or stored != records.to_builtin(self.settings):
            why = "resume=False" if not resume else "its settings differ"
            raise ValueError(f"path: {mpath} already holds a store and {why} "
                             f"(stored {stored}, requested {self.settings})")
        for s in old["shards"]:  # a completed shard that vanished or changed is an error
            checks.open_shard(self.path, s, old["d"], old["dtype"])
            if old["with_ids"]:
                checks.open_ids(self.path, s)
            if not old["complete"]:  # resuming: rows are appended after these, so they must be intact
                checks.check_bytes(self.path, s)
                if old["with_ids"]:
                    checks.check_bytes(self.path, s, ids=True)
        checks.check_totals(self.path, old)
        return old

    @property
    def complete(self) -> bool:
        return bool(self.manifest["complete"])

    @property
    def cursor(self) -> tuple[int, int]:
        """(source item, row within it) where the next unwritten row comes from."""
        item, row = self.manifest["cursor"]
        return int(item), int(row)

    def add(self, x: np.ndarray, item: int, ids: np.ndarray | None = None) -> None:
        """Append the rows x (n, d) that source item `item` produced (items in increasing order;
        one item may span shards). ids (n, 3) int32 when the store keeps them."""
        if self.complete:
            raise ValueError(f"{self.path / layout.MANIFEST}: the store is complete; nothing can be added")
        x = np.asarray(x)
        d = self.settings["d"]
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"x: expected shape (n, {d}), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"x: item {item} has NaN or Inf activations")
        if self.settings["with_ids"]:
            if ids is None or np.shape(ids) != (x.shape[0], 3):
                raise ValueError(f"ids: expected shape ({x.shape[0]}, 3), got {None if ids is None else np.shape(ids)}")
        if item != self._item:
            self._item, self._item_rows = int(item), 0
        pos = 0
        while pos < x.shape[0]:
            take = min(x.shape[0] - pos, self.settings["shard_rows"] - self._rows)
            self._buf.append(x[pos:pos + take])
            if ids is not None and self.settings["with_ids"]:
                self._ids.append(np.asarray(ids[pos:pos + take], np.int32))
            self._rows += take
            pos += take
            if self._rows == self.settings["shard_rows"]:
                # the next shard starts at row `pos` of this item (or at the next item)
                nxt = (int(item), self._item_rows + pos) if pos < x.shape[0] else (int(item) + 1, 0)
                self._flush(nxt)
        self._item_rows += x.shape[0]

    def _flush(self, next_cursor) -> None:
        """Write the buffered rows as the next shard, then list it in the manifest (atomic: the
        shard exists before it is listed)."""
        if self._rows == 0:
            return
        i = len(self.manifest["shards"])
        x = np.concatenate(self._buf).astype(self.settings["dtype"], copy=False)
        crc, sha = layout.save_npy(self.path / layout.shard_name(i), x)
        entry = dict(file=layout.shard_name(i), rows=int(x.shape[0]), crc32=crc, sha256=sha,
                     sum_sq_norm=float(np.sum(np.square(x, dtype=np.float64))))
        if self.settings["with_ids"]:
            crc, sha = layout.save_npy(self.path / layout.ids_name(i), np.concatenate(self._ids))
            entry.update(ids_file=layout.ids_name(i), ids_crc32=crc, ids_sha256=sha)
        layout.add_shard(self.manifest, entry, next_cursor)
        records.write_json(self.path / layout.MANIFEST, self.manifest)
        self._buf, self._ids, self._rows = [], [], 0

    def close(self) -> None:
        """Write the last (partial) shard and mark the store complete."""
        if self.complete:
            return
        self._flush(self.manifest["cursor"])
        self.manifest["complete"] = True
        records.write_json(self.path / layout.MANIFEST, self.manifest)


def harvest(path, items: Iterable, fn: Callable, *, d: int, progress_desc: str = "harvest",
            total: int | None = None, show_progress: bool | None = None, max_rows: int | None = None,
            **writer_kw) -> ActivationStore:
    """Resumable harvest: for each (index i, item) of `items`, `fn(item)` -> (x (n, d), ids (n, 3) or None)
    is appended. Items before the manifest's cursor are skipped without calling fn (so a re-run after a
    crash recomputes only the unfinished shard); the rows of the cursor's item already written are
    dropped. `items` must enumerate the same items in the same order on every run. max_rows: stop
    once that many rows are stored (the last item's rows are cut); progress counts rows."""
    from jsparse.core.progress import progress

    w = ActivationWriter(path, d, **writer_kw)
    if not w.complete:
        start_item, start_row = w.cursor
        done = w.manifest["num_tokens"]
        total = max_rows if total is None else total
        bar = progress(total=total, desc=progress_desc, enabled=show_progress, initial=done)
        try:
            for i, item in enumerate(items):
                if max_rows is not None and done >= max_rows:
                    break
                if i < start_item:
                    continue
                x, ids = fn(item)
                if i == start_item and start_row:
                    x = x[start_row:]
                    ids = None if ids is None else ids[start_row:]
                if max_rows is not None and done + x.shape[0] > max_rows:
                    x = x[: max_rows - done]
                    ids = None if ids is None else ids[: max_rows - done]
                w.add(x, i, ids)
                done += x.shape[0]
                bar.update(x.shape[0])
        finally:
            bar.close()
        w.close()
    return ActivationStore(path)
