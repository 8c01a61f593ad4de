"""Activation-store read throughput: shuffled (4096, 384) batches from disk.

    python -m experiments.bench_store [--rows 1000000] [--repeats 3] [--out results/bench_store.json]

Writes a store of `rows` random activations (d = 384, float32 and float16), then times one
epoch of shuffled batches with `experiments._timing.time_host` (the first epoch after writing is
the warm-up, reported separately; then the median of `--repeats` epochs, wall and process CPU
time; CPU time is what the reader costs, wall also counts waiting for a core on a loaded
machine). Side by side in the same run:
  store.batches threads=1   block shuffle, bounded buffer, all work in the calling thread
  store.batches threads=2   the same, block copies and row gathers on 2 worker threads (default)
  store + device_batches    threads=2, moved to the device in a background thread, cast to float32 and
                            normalised there (XLA's float16 -> float32 cast is ~3x NumPy's)
  StoreStream (train feed)  threads=2, float32 normalised host batches as `jsparse.sae.train` reads them
  naive random gather       baseline: a global permutation, each batch fancy-indexed from the memmaps
Target: >= 1M activations/s of d = 384 on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from experiments._timing import time_host


def _consume(it):
    last, n = None, 0
    for b in it:
        n += b.shape[0]
        last = b
    return last


def _feed(stream, n):
    return (stream.batch(i) for i in range(n))


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m experiments.bench_store", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="random activations written to each store")
    p.add_argument("--d", type=int, default=384, help="activation dimension")
    p.add_argument("--batch", type=int, default=4096, help="rows per shuffled batch")
    p.add_argument("--buffer-rows", type=int, default=1 << 18, help="shuffle buffer of store.batches, in rows")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs after the warm-up (the median is reported)")
    p.add_argument("--dtypes", default="float32,float16", help="comma-separated store dtypes, one store each")
    p.add_argument("--dir", default=None,
                   help="where to write the stores, kept afterwards (default: a temporary folder, deleted at the end)")
    p.add_argument("--out", default="results/bench_store.json", help="JSON file written")
    return p


def main(argv=None) -> dict:
    from jsparse.core.records import environment, write_json
    from jsparse.sae.store import ActivationStore, ActivationWriter, device_batches

    a = build_parser().parse_args(argv)
    root = Path(a.dir or tempfile.mkdtemp(prefix="bench_store_"))
    rng = np.random.default_rng(0)
    rows = []
    load = [os.getloadavg()[0]]
    try:
        for dtype in a.dtypes.split(","):
            path = root / dtype
            w = ActivationWriter(path, a.d, dtype=dtype, shard_rows=131072, resume=False)
            for i in range(0, a.rows, 65536):
                w.add(rng.standard_normal((min(65536, a.rows - i), a.d), np.float32), i)
            w.close()
            s = ActivationStore(path)
            n_batches = s.num_tokens // a.batch
            kw: dict[str, Any] = dict(seed=1, buffer_rows=a.buffer_rows)
            cases = {
                "store.batches threads=1": lambda s=s: _consume(s.batches(a.batch, threads=1, **kw)),
                "store.batches threads=2": lambda s=s: _consume(s.batches(a.batch, threads=2, **kw)),
                "store + device_batches": lambda s=s: _consume(device_batches(s.batches(a.batch, **kw),
                                                                              scale=s.norm_scale)),
                "StoreStream (train feed)": lambda s=s: _consume(_feed(s.stream(a.batch, **kw), n_batches)),
                "naive random gather": lambda s=s: _consume(s.rows(np.sort(idx)) for idx in np.array_split(
                    np.random.default_rng(1).permutation(s.num_tokens), n_batches)),
            }
            for name, fn in cases.items():
                t = time_host(fn, repeats=a.repeats)
                rows_epoch = n_batches * a.batch
                r: dict[str, Any] = dict(case=name, dtype=dtype, rows_per_s=rows_epoch / t.median_s,
                         rows_per_cpu_s=rows_epoch / t.cpu_median_s, warmup_s=t.compile_s, **t.as_dict())
                rows.append(r)
                load.append(os.getloadavg()[0])
                print(f"{name:26s} {dtype:8s} wall {r['rows_per_s'] / 1e6:6.2f} M rows/s   "
                      f"cpu {r['rows_per_cpu_s'] / 1e6:6.2f} M rows/cpu-s   (load {load[-1]:.1f})", flush=True)
    finally:
        if a.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    res = dict(settings=vars(a), environment=environment(), results=rows, target_rows_per_s=1e6,
               load_average_1min=load)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(a.out, res)
    return res


if __name__ == "__main__":
    main()
