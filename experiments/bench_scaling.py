"""Scaling of Monte Carlo sweep throughput with the number of devices.

    python -m experiments.bench_scaling                 # 1, 2, 4 simulated CPU devices (subprocesses)
    python -m experiments.bench_scaling --real          # this machine's devices (e.g. GPUs): trials/s
                                                        # and data-parallel SAE training tokens/s

Simulated CPU devices share the machine's cores, so on a 2-core machine the CPU numbers show the
overhead of sharding, not a speed-up; `--real` on a multi-GPU host shows the real scaling. The
workload is a FISTA sparse-recovery trial (M=64, N=128, 300 fixed iterations); SAE training
throughput (tokens/s) is added when `jsparse.sae` is available. Compilation is excluded and
reported separately; medians of `--repeats` runs.
"""
from __future__ import annotations

from experiments import _env  # noqa: F401

# isort: split

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

WORKER = r"""
import json, statistics, sys
import jax, jax.numpy as jnp
from jsparse import lasso
from jsparse.core import montecarlo

trials, repeats = int(sys.argv[1]), int(sys.argv[2])
batch = None if sys.argv[3] == "none" else int(sys.argv[3])

def trial(key, snr_db):
    A = jax.random.normal(key, (64, 128)) / 8.0
    x = jnp.zeros(128).at[:8].set(1.0)
    y = A @ x + 10 ** (-snr_db / 20) * jax.random.normal(jax.random.fold_in(key, 1), (64,)) / 8.0
    res = lasso.fista(A, y, 0.01, max_iters=300, tol=0.0)
    return {"err": jnp.sum((res.x - x) ** 2)}

runs, compile_s = [], None
for r in range(repeats + 1):
    res = montecarlo.sweep(trial, {"snr_db": [20.0]}, num_trials=trials, key=r, chunk_size=trials, batch_size=batch,
                           progress=False)
    if r == 0:
        compile_s = sum(res.meta["compile_seconds"].values())
    else:
        runs.append(res.meta["run_seconds"])
med = statistics.median(runs)
print(json.dumps({"devices": jax.device_count(), "batch_size": sys.argv[3], "backend": jax.default_backend(),
                  "trials": trials, "median_s": med, "trials_per_s": trials / med, "compile_s": compile_s}))
"""


SAE_WORKER = r"""
import json, statistics, sys, time
import jax, numpy as np
from jsparse import sae
from jsparse.core import distributed

d, width, batch, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
stream = sae.make_stream(jax.random.PRNGKey(0), n=4 * d, d=d, s=8, batch_size=batch)
batches = [np.asarray(stream.batch(i)) for i in range(4)]
mesh = distributed.data_mesh()
sae.train(batches * 2, method="gba", width=width, steps=2, key=jax.random.PRNGKey(0), mesh=mesh)  # compile
times = []
for r in range(3):
    t0 = time.perf_counter()
    sae.train(batches * (steps // 4), method="gba", width=width, steps=steps, key=jax.random.PRNGKey(r), mesh=mesh)
    times.append(time.perf_counter() - t0)
med = statistics.median(times)
print(json.dumps({"devices": jax.device_count(), "backend": jax.default_backend(), "d": d, "width": width,
                  "batch": batch, "steps": steps, "tokens_per_s": batch * steps / med}))
"""


def run_worker(devices: int | None, trials: int, repeats: int, batch: str = "none") -> dict:
    env = dict(os.environ)
    if devices is not None:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
        env["JAX_PLATFORMS"] = "cpu"
    env["JSPARSE_PROGRESS"] = "0"
    out = subprocess.run([sys.executable, "-c", WORKER, str(trials), str(repeats), batch], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m experiments.bench_scaling", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--real", action="store_true",
                   help="use this machine's devices and add the SAE training row "
                        "(default: 1, 2 and 4 simulated CPU devices)")
    p.add_argument("--trials", type=int, default=1024, help="FISTA trials per timed sweep")
    p.add_argument("--repeats", type=int, default=3, help="timed sweeps per setting (the median is reported)")
    p.add_argument("--out", type=Path, default=Path("results/bench_scaling.json"), help="JSON file written")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if a.real:
        rows = [run_worker(None, a.trials, a.repeats)]
    else:
        # Several simulated CPU devices map one trial at a time (see docs/troubleshooting.md), so
        # the device scaling is measured at batch_size=1 throughout; the vmapped 1-device run is
        # the reference a CPU user would actually use.
        rows = [run_worker(1, a.trials, a.repeats, "none")]
        rows += [run_worker(d, a.trials, a.repeats, "1") for d in (1, 2, 4)]
    base = rows[0]["trials_per_s"]
    print(f"{'devices':>7} {'batch':>6} {'backend':>8} {'trials/s':>10} {'vs first':>9} {'compile s':>10}")
    for r in rows:
        r["speedup"] = r["trials_per_s"] / base
        print(f"{r['devices']:>7} {r['batch_size']:>6} {r['backend']:>8} {r['trials_per_s']:>10.1f} "
              f"{r['speedup']:>9.2f} {r['compile_s']:>10.2f}")
    if a.real:  # SAE training throughput, data-parallel over every device (tokens/s)
        out = subprocess.run([sys.executable, "-c", SAE_WORKER, "768", str(16 * 768), "4096", "40"],
                             env=dict(os.environ, JSPARSE_PROGRESS="0"), capture_output=True, text=True, check=True)
        sae_row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"SAE GBA training, d=768, width 12288, batch 4096 on {sae_row['devices']} {sae_row['backend']} "
              f"device(s): {sae_row['tokens_per_s']:.0f} tokens/s")
        rows.append(sae_row)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
