"""Activation-store read throughput: shuffled (4096, 384) batches from disk.

    python -m experiments.bench_store [--rows 1000000] [--out results/bench_store.json]

Writes a store of `rows` random activations (d = 384, float32 and float16), then times one
epoch of shuffled batches, median of `--repeats` epochs (the first epoch after writing is also
timed and reported separately: page-cache warm-up). Side by side in the same run:
  store.batches            block shuffle, bounded buffer (host numpy batches, store dtype)
  store + device_batches   the same, moved to the device and normalised (float32) in a thread
  naive random gather      baseline: a global permutation, each batch fancy-indexed from the memmaps
Target (issue 8): >= 1M activations/s of d = 384 on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _epoch_rate(make_iter, rows_expected: int) -> float:
    t = time.perf_counter()
    n = 0
    for b in make_iter():
        n += b.shape[0]
    if hasattr(b, "block_until_ready"):
        b.block_until_ready()
    return n / (time.perf_counter() - t)


def main(argv=None) -> dict:
    from jsparse.core.records import environment, write_json
    from jsparse.sae.store import ActivationStore, ActivationWriter, device_batches

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=384)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--buffer-rows", type=int, default=1 << 18)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", default=None, help="where to write the temporary stores (default: a temp dir)")
    p.add_argument("--out", default="results/bench_store.json")
    a = p.parse_args(argv)
    root = Path(a.dir or tempfile.mkdtemp(prefix="bench_store_"))
    rng = np.random.default_rng(0)
    rows = []
    try:
        for dtype in ("float32", "float16"):
            path = root / dtype
            w = ActivationWriter(path, a.d, dtype=dtype, shard_rows=131072, resume=False)
            for i in range(0, a.rows, 65536):
                w.add(rng.standard_normal((min(65536, a.rows - i), a.d), np.float32), i)
            w.close()
            s = ActivationStore(path)
            cases = {
                "store.batches": lambda s=s: s.batches(a.batch, seed=1, buffer_rows=a.buffer_rows),
                "store + device_batches": lambda s=s: device_batches(
                    s.batches(a.batch, seed=1, buffer_rows=a.buffer_rows), scale=s.norm_scale),
                "naive random gather": lambda s=s: (s.rows(np.sort(idx)) for idx in np.array_split(
                    np.random.default_rng(1).permutation(s.num_tokens), s.num_tokens // a.batch)),
            }
            for name, make in cases.items():
                first = _epoch_rate(make, s.num_tokens)
                rates = [_epoch_rate(make, s.num_tokens) for _ in range(a.repeats)]
                rows.append(dict(case=name, dtype=dtype, rows_per_s=statistics.median(rates), first_epoch=first,
                                 repeats=rates))
                print(f"{name:24s} {dtype:8s} {statistics.median(rates) / 1e6:7.2f} M rows/s "
                      f"(first epoch {first / 1e6:.2f})", flush=True)
    finally:
        if a.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    res = dict(settings=vars(a), environment=environment(), results=rows, target_rows_per_s=1e6)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(a.out, res)
    return res


if __name__ == "__main__":
    main()
