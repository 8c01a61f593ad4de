"""Activation store: sharded `.npy` activations on disk with a JSON manifest.

Layout of a store folder:
    manifest.json        model, layer, dtype, d, num_tokens, normalisation constant, shards
    shard_00000.npy      (rows, d) activations in the store dtype (float32 or float16)
    ids_00000.npy        optional (rows, 3) int32: (document, position, token id) of each row

Writing (`ActivationWriter`) fills fixed-size shards; each full shard is written to a temp file
and renamed (atomic), then the manifest is rewritten atomically. A crash therefore leaves every
shard the manifest lists complete and valid; the manifest also records the harvest cursor (the
source item and the row within it where the next shard starts) so that `harvest` resumes without
recomputing finished items.

Reading (`ActivationStore`) memory-maps every shard, checks each against the manifest (shape,
dtype, size, optional crc32) and raises ValueError naming the file on any disagreement.
`batches` streams shuffled batches: the rows of an epoch are cut into contiguous blocks, the
block order is shuffled across all shards, and `buffer_rows` worth of blocks at a time are read
into memory and permuted, so every row is seen exactly once per epoch while memory stays bounded.
`device_batches` moves batches to the device in a background thread ahead of compute, applying
the normalisation there (x * c with c = 1 / sqrt(mean ||x||^2), unit mean squared norm).
"""
from __future__ import annotations

import os
import queue
import threading
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from jsparse.core import records

__all__ = ["ActivationWriter", "ActivationStore", "harvest", "device_batches", "StoreStream", "MANIFEST"]

MANIFEST = "manifest.json"
FORMAT = "jsparse-activations/1"
_DTYPES = ("float32", "float16")


def _shard_name(i: int) -> str:
    return f"shard_{i:05d}.npy"


def _ids_name(i: int) -> str:
    return f"ids_{i:05d}.npy"


def _atomic_save(path: Path, arr: np.ndarray) -> int:
    """np.save to a temp file + fsync + rename; returns the crc32 of the written bytes."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    crc = _crc32(tmp)
    os.replace(tmp, path)
    return crc


def _crc32(path: Path, chunk: int = 1 << 24) -> int:
    crc = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return crc
            crc = zlib.crc32(b, crc)


def _run_all(pool, fn, items) -> None:
    """fn(item) for every item, spread over the pool's threads (or here when pool is None)."""
    if pool is None:
        for it in items:
            fn(it)
    else:
        for f in [pool.submit(fn, it) for it in items]:
            f.result()


def _ordered(pool, fn, indices, ahead: int) -> Iterator:
    """Yield fn(j) for j in indices in order, computing up to `ahead` of them in the pool."""
    if pool is None:
        for j in indices:
            yield fn(j)
        return
    pending: deque = deque()
    it = iter(indices)
    for j in it:
        pending.append(pool.submit(fn, j))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


# -- writing ---------------------------------------------------------------------------------
class ActivationWriter:
    """Append activations (rows of d floats) to a store folder, shard by shard.

    Args:
      path: the store folder (created). d: feature dimension. dtype: "float32" or "float16".
      shard_rows: rows per shard (the last shard may be shorter). model, layer: provenance.
      meta: any extra JSON-able provenance. with_ids: also keep (doc, pos, token) per row.
      resume: reopen an existing unfinished store with the same settings (else ValueError).
    """

    def __init__(self, path, d: int, *, dtype: str = "float32", shard_rows: int = 65536, model: str = "",
                 layer: int | str = "", meta: dict | None = None, with_ids: bool = False, resume: bool = True):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype: expected one of {_DTYPES}, got {dtype!r}")
        if int(d) < 1 or int(shard_rows) < 1:
            raise ValueError(f"d and shard_rows must be >= 1, got d={d}, shard_rows={shard_rows}")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.settings = dict(format=FORMAT, model=str(model), layer=layer, dtype=dtype, d=int(d),
                             shard_rows=int(shard_rows), with_ids=bool(with_ids), meta=records.to_builtin(meta or {}))
        self.manifest: dict[str, Any] = dict(self.settings, num_tokens=0, sum_sq_norm=0.0, mean_sq_norm=None,
                                             norm_scale=None, complete=False, cursor=[0, 0], shards=[])
        mpath = self.path / MANIFEST
        if mpath.exists():
            old = records.read_json(mpath)
            same = {k: old.get(k) for k in self.settings} == records.to_builtin(self.settings)
            if not resume or not same:
                why = "resume=False" if not resume else "its settings differ"
                raise ValueError(f"path: {mpath} already holds a store and {why} "
                                 f"(stored {({k: old.get(k) for k in self.settings})}, requested {self.settings})")
            self.manifest = old
            for s in old["shards"]:  # a completed shard that vanished or changed is an error
                _check_shard(self.path, s, old["d"], old["dtype"], verify=False)
        self._buf: list[np.ndarray] = []
        self._ids: list[np.ndarray] = []
        self._rows = 0
        # the item being added and how many of its rows are written or buffered (resume: the cursor)
        self._item, self._item_rows = self.manifest["cursor"]

    @property
    def complete(self) -> bool:
        return bool(self.manifest["complete"])

    @property
    def cursor(self) -> tuple[int, int]:
        """(source item, row within it) where the next unwritten row comes from."""
        return tuple(self.manifest["cursor"])

    def add(self, x: np.ndarray, item: int, ids: np.ndarray | None = None) -> None:
        """Append the rows x (n, d) that source item `item` produced (items in increasing order;
        one item may span shards). ids (n, 3) int32 when the store keeps them."""
        if self.complete:
            raise ValueError(f"{self.path / MANIFEST}: the store is complete; nothing can be added")
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
            if self.settings["with_ids"]:
                self._ids.append(np.asarray(ids[pos:pos + take], np.int32))
            self._rows += take
            pos += take
            if self._rows == self.settings["shard_rows"]:
                # the next shard starts at row `pos` of this item (or at the next item)
                nxt = (int(item), self._item_rows + pos) if pos < x.shape[0] else (int(item) + 1, 0)
                self._flush(nxt)
        self._item_rows += x.shape[0]

    def _flush(self, next_cursor) -> None:
        if self._rows == 0:
            return
        i = len(self.manifest["shards"])
        x = np.concatenate(self._buf).astype(self.settings["dtype"], copy=False)
        entry = dict(file=_shard_name(i), rows=int(x.shape[0]), crc32=_atomic_save(self.path / _shard_name(i), x),
                     sum_sq_norm=float(np.sum(np.square(x, dtype=np.float64))))
        if self.settings["with_ids"]:
            ids = np.concatenate(self._ids)
            entry["ids_file"] = _ids_name(i)
            entry["ids_crc32"] = _atomic_save(self.path / _ids_name(i), ids)
        m = self.manifest
        m["shards"].append(entry)
        m["num_tokens"] += entry["rows"]
        m["sum_sq_norm"] += entry["sum_sq_norm"]
        m["mean_sq_norm"] = m["sum_sq_norm"] / m["num_tokens"]
        m["norm_scale"] = float(1.0 / np.sqrt(m["mean_sq_norm"])) if m["mean_sq_norm"] > 0 else 1.0
        m["cursor"] = [int(next_cursor[0]), int(next_cursor[1])]
        records.write_json(self.path / MANIFEST, m)  # atomic: the shard exists before it is listed
        self._buf, self._ids, self._rows = [], [], 0

    def close(self) -> None:
        """Write the last (partial) shard and mark the store complete."""
        if self.complete:
            return
        self._flush(self.manifest["cursor"])
        self.manifest["complete"] = True
        records.write_json(self.path / MANIFEST, self.manifest)


def harvest(path, items: Iterable, fn: Callable, *, d: int, progress_desc: str = "harvest",
            total: int | None = None, show_progress: bool | None = None, max_rows: int | None = None,
            **writer_kw) -> "ActivationStore":
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


# -- reading ---------------------------------------------------------------------------------
def _check_shard(root: Path, s: dict, d: int, dtype: str, verify: bool) -> np.ndarray:
    """Memory-map one shard, checking it against its manifest entry; ValueError names the file."""
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
    if verify and _crc32(f) != s["crc32"]:
        raise ValueError(f"{f}: checksum mismatch (corrupt shard)")
    return arr


class ActivationStore:
    """Read a store folder. Attributes: d, dtype, num_tokens, norm_scale (c with E||c x||^2 = 1),
    mean_sq_norm, model, layer, complete, manifest, shards (list of memmaps)."""

    def __init__(self, path, *, verify: bool = False):
        self.path = Path(path)
        mpath = self.path / MANIFEST
        if not mpath.exists():
            raise ValueError(f"path: no {MANIFEST} in {self.path}")
        try:
            m = records.read_json(mpath)
        except Exception as err:
            raise ValueError(f"{mpath}: unreadable manifest ({err})") from None
        if m.get("format") != FORMAT:
            raise ValueError(f"{mpath}: not an activation store manifest (format {m.get('format')!r})")
        self.manifest = m
        self.d, self.dtype = int(m["d"]), str(m["dtype"])
        self.model, self.layer, self.complete = m["model"], m["layer"], bool(m["complete"])
        self.shards = [_check_shard(self.path, s, self.d, self.dtype, verify) for s in m["shards"]]
        rows = [s.shape[0] for s in self.shards]
        if sum(rows) != m["num_tokens"]:
            raise ValueError(f"{mpath}: num_tokens {m['num_tokens']} != {sum(rows)} rows in the shards")
        self.num_tokens = int(m["num_tokens"])
        self.mean_sq_norm = m["mean_sq_norm"]
        self.norm_scale = float(m["norm_scale"]) if m["norm_scale"] is not None else 1.0
        self._offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)

    def __len__(self) -> int:
        return self.num_tokens

    def check_dim(self, d: int, what: str = "SAE") -> None:
        """ValueError naming the manifest when this store's d differs from a model's input d."""
        if int(d) != self.d:
            raise ValueError(f"{self.path / MANIFEST}: store rows have d={self.d}, the {what} expects d={d}")

    def ids(self) -> np.ndarray:
        """(num_tokens, 3) int32 (document, position, token id), if the store kept them."""
        if not self.manifest["with_ids"]:
            raise ValueError(f"{self.path / MANIFEST}: this store has no ids")
        out = []
        for s in self.manifest["shards"]:
            f = self.path / s["ids_file"]
            try:
                a = np.load(f, mmap_mode="r", allow_pickle=False)
            except Exception as err:
                raise ValueError(f"{f}: corrupt or truncated ids file ({err})") from None
            if a.shape != (s["rows"], 3):
                raise ValueError(f"{f}: holds {a.shape}, manifest says ({s['rows']}, 3)")
            out.append(a)
        return np.concatenate(out) if out else np.zeros((0, 3), np.int32)

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Rows at global indices (any order), as the store dtype."""
        index = np.asarray(index, np.int64)
        shard = np.searchsorted(self._offsets, index, side="right") - 1
        out = np.empty((index.shape[0], self.d), self.dtype)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self.shards[s][index[sel] - self._offsets[s]]
        return out

    def _blocks(self, block_rows: int) -> np.ndarray:
        """(num_blocks, 3) [shard, start, stop] of contiguous row blocks covering every shard."""
        out = []
        for i, sh in enumerate(self.shards):
            n = sh.shape[0]
            starts = np.arange(0, n, block_rows)
            out.append(np.stack([np.full_like(starts, i), starts, np.minimum(starts + block_rows, n)], 1))
        return np.concatenate(out) if out else np.zeros((0, 3), np.int64)

    def batches(self, batch_size: int, *, seed: int = 0, epochs: int | None = 1, start_batch: int = 0,
                buffer_rows: int = 1 << 18, block_rows: int = 4096, drop_last: bool = True,
                outlier_factor: float | None = None, shuffle: bool = True,
                threads: int = 2, dtype=None, scale: float | None = None) -> Iterator[np.ndarray]:
        """Shuffled (batch_size, d) host batches in the store dtype, every row once per epoch.

        Each epoch draws a permutation of contiguous `block_rows` blocks over all shards; blocks are
        read `buffer_rows` at a time (the only rows held in memory besides < batch_size carried
        rows), permuted, and cut into batches. The last partial batch of an epoch is dropped when
        drop_last, else yielded short. outlier_factor: drop rows with ||x||^2 > factor * the store's
        mean squared norm (yielded batches then still have batch_size rows). epochs=None: forever.
        start_batch: skip that many batches cheaply (no reads; used to resume training).
        Batch sequence depends only on (seed, batch_size, buffer_rows, block_rows, outlier_factor).
        threads: worker threads for the two memory-bound passes (the block copies of a fill and
        the per-batch row gathers; NumPy releases the GIL in both), up to `threads + 1` batches
        gathered ahead of the consumer; 1 = all in the calling thread. Same batches either way.
        dtype, scale: yield `batch.astype(dtype) * scale` (computed in the worker threads; e.g.
        float32 at unit mean squared norm for training); default: the store dtype, unscaled.
        """
        if batch_size < 1 or buffer_rows < 1 or block_rows < 1 or threads < 1:
            raise ValueError("batch_size, buffer_rows, block_rows and threads must be >= 1")
        pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
        try:
            post = None
            if dtype is not None or scale is not None:
                out_dtype = np.dtype(self.dtype if dtype is None else dtype)
                c = np.asarray(1.0 if scale is None else scale, out_dtype)
                post = lambda x: np.multiply(x, c, dtype=out_dtype)  # noqa: E731  (one pass: cast and scale)
            yield from self._batches(pool, threads, batch_size, seed, epochs, start_batch, buffer_rows, block_rows,
                                     drop_last, outlier_factor, shuffle, post)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _batches(self, pool, threads, batch_size, seed, epochs, start_batch, buffer_rows, block_rows, drop_last,
                 outlier_factor, shuffle, post=None):
        post = post or (lambda x: x)
        blocks = self._blocks(block_rows)
        per_fill = max(1, buffer_rows // block_rows)
        limit = None if outlier_factor is None else float(outlier_factor) * float(self.mean_sq_norm or 0.0)
        emitted, epoch = 0, 0
        buf = None  # the fill buffer, reused: yielded batches are copies (np.take), never views of it
        while epochs is None or epoch < epochs:
            rng = np.random.default_rng([int(seed), epoch])
            order = rng.permutation(len(blocks)) if shuffle else np.arange(len(blocks))
            carry = np.zeros((0, self.d), self.dtype)
            for f0 in range(0, len(blocks), per_fill):
                fill = blocks[order[f0:f0 + per_fill]]
                n_new = int(np.sum(fill[:, 2] - fill[:, 1]))
                perm = rng.permutation(carry.shape[0] + n_new) if shuffle else np.arange(carry.shape[0] + n_new)
                if limit is None:  # sizes known without reading: skip whole fills when resuming
                    n_batches = (carry.shape[0] + n_new) // batch_size
                    if emitted + n_batches <= start_batch and n_batches > 0:
                        # read nothing except the rows that carry over into the next fill
                        keep = perm[n_batches * batch_size:]
                        carry = self._gather(fill, carry, keep)
                        emitted += n_batches
                        continue
                # one copy out of the page cache into a reused buffer (no fresh pages per fill), then
                # one gather per batch (no permuted copy of the fill)
                n_tot = carry.shape[0] + n_new
                if buf is None or buf.shape[0] < n_tot:
                    buf = np.empty((n_tot, self.d), self.dtype)
                buf[:carry.shape[0]] = carry
                starts = carry.shape[0] + np.concatenate([[0], np.cumsum(fill[:, 2] - fill[:, 1])])
                copies = [(buf[p:p + b - a], self.shards[s][a:b]) for p, (s, a, b) in zip(starts, fill)]
                _run_all(pool, lambda dst_src: np.copyto(*dst_src), copies)
                data = buf[:n_tot]
                if limit is not None:
                    sq = np.einsum("ij,ij->i", data, data, dtype=np.float32)
                    perm = perm[sq[perm] <= limit]
                n_full = perm.shape[0] // batch_size
                first = min(max(start_batch - emitted, 0), n_full)
                gather = lambda j, data=data, perm=perm: post(np.take(data, perm[j * batch_size:(j + 1) * batch_size],
                                                                      axis=0))
                yield from _ordered(pool, gather, range(first, n_full), ahead=threads + 1)
                emitted += n_full
                carry = np.take(data, perm[n_full * batch_size:], axis=0)
            if not drop_last and carry.shape[0] > 0:
                if emitted >= start_batch:
                    yield post(carry)
                emitted += 1
            epoch += 1

    def _gather(self, fill: np.ndarray, carry: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Rows `keep` of concat(carry, fill blocks) without reading the whole fill."""
        sizes = np.concatenate([[carry.shape[0]], fill[:, 2] - fill[:, 1]])
        offs = np.concatenate([[0], np.cumsum(sizes)])
        out = np.empty((keep.shape[0], self.d), self.dtype)
        for r, k in enumerate(keep):
            j = np.searchsorted(offs, k, side="right") - 1
            out[r] = carry[k] if j == 0 else self.shards[fill[j - 1, 0]][fill[j - 1, 1] + k - offs[j]]
        return out

    def stream(self, batch_size: int, **kw) -> "StoreStream":
        return StoreStream(self, batch_size, **kw)


class StoreStream:
    """`batch(i)` access for `jsparse.sae.train`: sequential reads, cheap restart at any i (resume).
    Yields float32 batches normalised to unit mean squared norm when `normalize`."""

    def __init__(self, store: ActivationStore, batch_size: int, *, normalize: bool = True, seed: int = 0, **kw):
        self.store, self.batch_size, self.normalize, self.seed, self.kw = store, batch_size, normalize, seed, kw
        self._it, self._next = None, None

    def batch(self, i: int) -> np.ndarray:
        if self._it is None or i != self._next:
            scale = self.store.norm_scale if self.normalize else None
            self._it = self.store.batches(self.batch_size, seed=self.seed, epochs=None, start_batch=i,
                                          dtype=np.float32, scale=scale, **self.kw)
        self._next = i + 1
        return next(self._it)


def device_batches(batches: Iterable[np.ndarray], *, scale: float = 1.0, dtype=None, size: int = 2,
                   device=None) -> Iterator:
    """Move host batches to the device in a background thread, `size` batches ahead of the
    consumer, converting to `dtype` (default float32) and multiplying by `scale` on the device.
    Batches that already have `dtype` and scale 1 are only transferred. (Casting float16 here,
    in XLA, costs about a third of NumPy's cast in `store.batches(dtype=...)`.)"""
    import jax
    import jax.numpy as jnp

    dtype = jnp.float32 if dtype is None else dtype
    conv = jax.jit(lambda x, c: (x.astype(dtype) * c).astype(dtype))
    q: queue.Queue = queue.Queue(maxsize=max(1, size))
    stop = threading.Event()
    c = np.asarray(scale, np.float32)

    def work():
        try:
            for b in batches:
                x = jax.device_put(b, device)
                if scale != 1.0 or x.dtype != np.dtype(dtype):  # (already cast and scaled, e.g. batches(dtype=, scale=): no pass)
                    x = conv(x, c)
                x = jax.block_until_ready(x)
                while not stop.is_set():
                    try:
                        q.put(x, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(None)
        except BaseException as err:
            q.put(err)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=5)
