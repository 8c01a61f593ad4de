"""Reading an activation store: `ActivationStore` memory-maps the shards and streams shuffled
batches, `StoreStream` gives the trainer `batch(i)` access, `device_batches` moves batches to the
device ahead of compute.

Opening checks the manifest and every shard against it (header, shape, dtype, size), and the
shards' recorded checksums are verified before their rows are used (`ActivationStore`'s `verify`);
a damaged file raises `jsparse.CorruptFileError` naming it. `batches` streams shuffled batches: the rows of an
epoch are cut into contiguous blocks, the block order is shuffled across all shards, and
`buffer_rows` worth of blocks at a time are read into memory and permuted, so every row is seen
exactly once per epoch while memory stays bounded. `device_batches` applies the normalisation on
the device (x * c with c = 1 / sqrt(mean ||x||^2), unit mean squared norm).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Generator, Iterable, Iterator

import numpy as np

from ..prefetch import Background, OrderedMap, close_at_exit, run_all
from . import checks, layout

__all__ = ["ActivationStore", "StoreStream", "device_batches"]


class ActivationStore:
    """Read a store folder. Attributes: d, dtype, num_tokens, norm_scale (c with E||c x||^2 = 1),
    mean_sq_norm, model, layer, complete, manifest, verify, shards (list of memmaps).

    Opening checks the manifest and every shard's header, shape, dtype and size. Checksums (the
    SHA-256 the writer recorded per file; the crc32 for stores written before it was recorded):
      verify="lazy" (default): each shard is hashed the first time rows of it are read through
        this object (`batches`, `rows`, `shards`), before any of its rows is returned; ids files
        when `ids()` reads them.
      verify="full" (or True): every shard and ids file is hashed when the store is opened.
      verify="size" (or False): no hashing; only the checks on opening.

    Raises:
      ValueError: `path` holds no manifest.json.
      CorruptFileError: the manifest is damaged (not JSON, a missing or mistyped field), or a file
        it lists is missing, truncated, disagrees with it, or fails its checksum (on opening, or at
        the first read of that file with verify="lazy").
    """

    def __init__(self, path, *, verify: bool | str = "lazy"):
        self.path = Path(path)
        self.verify = checks.verify_mode(verify)
        m = checks.read_manifest(self.path)
        self.manifest = m
        self.d, self.dtype = int(m["d"]), str(m["dtype"])
        self.model, self.layer, self.complete = m["model"], m["layer"], bool(m["complete"])
        self._maps = [checks.open_shard(self.path, s, self.d, self.dtype) for s in m["shards"]]
        checks.check_totals(self.path, m)
        self.num_tokens = int(m["num_tokens"])
        self.mean_sq_norm = m["mean_sq_norm"]
        self.norm_scale = float(m["norm_scale"]) if m["norm_scale"] is not None else 1.0
        self._offsets = np.concatenate([[0], np.cumsum([a.shape[0] for a in self._maps])]).astype(np.int64)
        self._checked: set[tuple[int, bool]] = set()  # (shard, ids) whose bytes matched their checksum
        # one lock per file: batches may read in a background thread while the caller reads rows, and
        # the shards of a fill are hashed in parallel
        self._locks = {(i, ids): threading.Lock() for i in range(len(self._maps)) for ids in (False, True)}
        if self.verify == "full" and self._maps:
            with ThreadPoolExecutor(min(len(self._maps), os.cpu_count() or 1)) as pool:
                self._verify_shards(range(len(self._maps)), pool)
            for i in range(len(self._maps) if m["with_ids"] else 0):
                checks.open_ids(self.path, m["shards"][i])
                self._verified(i, ids=True)

    def _verified(self, i: int, ids: bool = False) -> None:
        """Hash shard i (or its ids file) once per store object unless verify="size"."""
        i = int(i)
        if self.verify == "size" or (i, ids) in self._checked:
            return
        with self._locks[(i, ids)]:
            if (i, ids) not in self._checked:
                checks.check_bytes(self.path, self.manifest["shards"][i], ids=ids)
                self._checked.add((i, ids))

    def _verify_shards(self, shards: Iterable[int], pool) -> None:
        """Hash the shards not yet verified among `shards`, spread over `pool` (hashlib releases the GIL)."""
        todo = [int(i) for i in shards if self.verify != "size" and (int(i), False) not in self._checked]
        if todo:
            run_all(self._verified, todo, pool)

    def _shard(self, i: int) -> np.ndarray:
        """The memmap of shard i, its bytes checked first (see the class docstring)."""
        self._verified(i)
        return self._maps[i]

    @property
    def shards(self) -> list[np.ndarray]:
        """The (rows, d) memmaps of all shards, in order (each checked as its rows would be read)."""
        return [self._shard(i) for i in range(len(self._maps))]

    def __len__(self) -> int:
        return self.num_tokens

    def check_dim(self, d: int, what: str = "SAE") -> None:
        """ValueError naming the manifest when this store's d differs from a model's input d."""
        if int(d) != self.d:
            raise ValueError(f"{self.path / layout.MANIFEST}: store rows have d={self.d}, the {what} expects d={d}")

    def ids(self) -> np.ndarray:
        """(num_tokens, 3) int32 (document, position, token id), if the store kept them."""
        if not self.manifest["with_ids"]:
            raise ValueError(f"{self.path / layout.MANIFEST}: this store has no ids")
        out = []
        for i, s in enumerate(self.manifest["shards"]):
            a = checks.open_ids(self.path, s)
            self._verified(i, ids=True)
            out.append(a)
        return np.concatenate(out) if out else np.zeros((0, 3), np.int32)

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Rows at global indices (any order), as the store dtype."""
        index = np.asarray(index, np.int64)
        shard = np.searchsorted(self._offsets, index, side="right") - 1
        out = np.empty((index.shape[0], self.d), self.dtype)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self._shard(int(s))[index[sel] - self._offsets[s]]
        return out

    def _blocks(self, block_rows: int) -> np.ndarray:
        """(num_blocks, 3) [shard, start, stop] of contiguous row blocks covering every shard."""
        out = []
        for i, sh in enumerate(self._maps):
            n = sh.shape[0]
            starts = np.arange(0, n, block_rows)
            out.append(np.stack([np.full_like(starts, i), starts, np.minimum(starts + block_rows, n)], 1))
        return np.concatenate(out) if out else np.zeros((0, 3), np.int64)

    def batches(self, batch_size: int, *, seed: int = 0, epochs: int | None = 1, start_batch: int = 0,
                buffer_rows: int = 1 << 18, block_rows: int = 4096, drop_last: bool = True,
                outlier_factor: float | None = None, shuffle: bool = True,
                threads: int = 2, dtype=None, scale: float | None = None) -> Generator[np.ndarray, None, None]:
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
        The arguments are checked here (ValueError); the returned generator reads lazily. Close it
        (or let it finish) to stop its worker threads; one still open at interpreter exit is closed then.
        With verify="lazy" a shard's checksum is checked before the first batch holding its rows,
        so a damaged shard raises CorruptFileError from `next` instead of yielding its rows.
        """
        if batch_size < 1 or buffer_rows < 1 or block_rows < 1 or threads < 1:
            raise ValueError("batch_size, buffer_rows, block_rows and threads must be >= 1")
        post = None
        if dtype is not None or scale is not None:
            out_dtype = np.dtype(self.dtype if dtype is None else dtype)
            c = np.asarray(1.0 if scale is None else scale, out_dtype)
            post = lambda x: np.multiply(x, c, dtype=out_dtype)  # noqa: E731  (one pass: cast and scale)
        args = (threads, batch_size, seed, epochs, start_batch, buffer_rows, block_rows, drop_last, outlier_factor,
                shuffle, post)
        return close_at_exit(self._pooled(*args))

    def _pooled(self, threads, *args):
        """`_batches` with a pool of `threads` workers (none for 1), shut down when the generator
        finishes or is closed (at the latest at interpreter exit: `close_at_exit`)."""
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="jsparse-store") if threads > 1 else None
        try:
            yield from self._batches(pool, threads, *args)
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
                self._verify_shards(np.unique(fill[:, 0]), pool)  # verify="lazy": before any row of them is used
                starts = carry.shape[0] + np.concatenate([[0], np.cumsum(fill[:, 2] - fill[:, 1])])
                copies = [(buf[p:p + b - a], self._shard(s)[a:b]) for p, (s, a, b) in zip(starts, fill)]
                run_all(lambda dst_src: np.copyto(*dst_src), copies, pool)
                data = buf[:n_tot]
                if limit is not None:
                    sq = np.einsum("ij,ij->i", data, data, dtype=np.float32)
                    perm = perm[sq[perm] <= limit]
                n_full = perm.shape[0] // batch_size
                first = min(max(start_batch - emitted, 0), n_full)
                gather = lambda j, data=data, perm=perm: post(np.take(data, perm[j * batch_size:(j + 1) * batch_size],
                                                                      axis=0))
                yield from OrderedMap(gather, range(first, n_full), pool=pool, ahead=threads + 1)
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
            out[r] = carry[k] if j == 0 else self._shard(fill[j - 1, 0])[fill[j - 1, 1] + k - offs[j]]
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
            if self._it is not None:
                self._it.close()  # stop the previous reader's threads now, not when it is collected
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
    c = np.asarray(scale, np.float32)

    def put(b):
        x = jax.device_put(b, device)
        if scale != 1.0 or x.dtype != np.dtype(dtype):  # already cast and scaled (batches(dtype=, scale=)): no pass
            x = conv(x, c)
        return jax.block_until_ready(x)

    return close_at_exit(_ahead(map(put, batches), size))


def _ahead(source: Iterator, size: int) -> Iterator:
    """Yield from a `Background(source, size)` started at the first `next`; closing stops its thread."""
    ahead = Background(source, size)
    try:
        yield from ahead
    finally:
        ahead.close()
