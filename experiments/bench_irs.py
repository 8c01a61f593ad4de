"""Benchmark of the IRS-MIMO experiment's methods (run: python -m experiments.bench_irs).

Problem: the reference IRS setup (M = 288, N = 5832, complex128, known σ²), SNR in
{4, 8, 12, 16, 20} dB x `--trials` realisations, simulated once beforehand (not timed).
For every method: compile time (reported separately), then the median over `--repeats` of one
vmapped dispatch over the whole batch (block_until_ready), the time per run, and the
extrapolated time of the issue's full sweep (5 SNRs x 50 realisations = 250 runs).
Side by side in the same run: cSBL with the structured E-step (`pc.csbl_kron`) against the
dense `sbl.sbl` on the 288 x 5832 matrix (the named baseline; one problem, `--dense-iters`
EM iterations each, so that the dense version stays affordable).
Writes results/bench_irs.json (or --out) and prints a Markdown table.
"""
from __future__ import annotations

from experiments import _env  # noqa: F401  (XLA flag before jax import)

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

from jsparse.core import records  # noqa: E402
from jsparse.core.kron import kron_dense  # noqa: E402
from jsparse.sbl import irs, pc, sbl  # noqa: E402
from experiments.irs.run import METHODS, LABELS, SNRS, estimate  # noqa: E402

FULL_RUNS = len(SNRS) * 50


def _time(fn, args, repeats):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return compile_s, statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=4, help="realisations per SNR in the timed batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", nargs="*", default=METHODS, choices=METHODS)
    ap.add_argument("--dense-iters", type=int, default=5, help="EM iterations for the dense-vs-structured cSBL pair")
    ap.add_argument("--out", type=Path, default=Path("results/bench_irs.json"))
    a = ap.parse_args(argv)

    keys = jax.random.split(jax.random.PRNGKey(0), a.trials)
    snr = jnp.repeat(jnp.asarray(SNRS), a.trials)
    keys = jnp.tile(keys, (len(SNRS), 1))
    problems = jax.jit(jax.vmap(lambda k, s: irs.simulate(k, s, dtype=jnp.complex128)))(keys, snr)
    batch = int(snr.shape[0])

    rows = []
    for m in a.methods:
        fn = jax.vmap(lambda p, m=m: estimate(m, p)[0])
        compile_s, run_s = _time(fn, (problems,), a.repeats)
        rows.append({"method": m, "compile_s": compile_s, "batch_s": run_s, "per_run_s": run_s / batch,
                     "full_sweep_s": run_s / batch * FULL_RUNS})
        print(f"{m}: compile {compile_s:.1f} s, {run_s / batch:.3f} s/run", flush=True)

    p0 = jax.tree_util.tree_map(lambda v: v[0], problems)
    h = kron_dense(p0.factors)
    pair = []
    for name, fn in (
        ("cSBL structured (pc.csbl_kron)", lambda p: pc.csbl_kron(p.y, p.factors, noise_var=p.noise_var, max_iters=a.dense_iters, tol=0.0).x),
        ("cSBL dense (sbl.sbl, baseline)", lambda p, h=h: sbl(p.y, h, noise_var=p.noise_var, prune=1e-4, max_iters=a.dense_iters, tol=0.0).x),
    ):
        compile_s, run_s = _time(fn, (p0,), a.repeats)
        pair.append({"variant": name, "iterations": a.dense_iters, "compile_s": compile_s, "run_s": run_s,
                     "per_iteration_s": run_s / a.dense_iters})

    total = sum(r["full_sweep_s"] for r in rows)
    lines = ["| method | compile (s) | per run (s) | full sweep, 250 runs (s) |", "|---|---|---|---|"]
    lines += [f"| {LABELS[r['method']]} | {r['compile_s']:.1f} | {r['per_run_s']:.3f} | {r['full_sweep_s']:.0f} |" for r in rows]
    lines.append(f"| **all methods** | {sum(r['compile_s'] for r in rows):.0f} | | **{total:.0f}** |")
    lines += ["", "| cSBL E-step | compile (s) | per EM iteration (s) |", "|---|---|---|"]
    lines += [f"| {r['variant']} | {r['compile_s']:.1f} | {r['per_iteration_s']:.3f} |" for r in pair]
    text = (f"IRS benchmark: complex128, batch of {batch} runs ({a.trials} realisations x {len(SNRS)} SNRs), "
            f"median of {a.repeats} repeats, compilation excluded.\n\n" + "\n".join(lines) + "\n")
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    records.write_json(a.out, {"settings": vars(a) | {"out": str(a.out), "batch": batch}, "methods": rows,
                               "csbl_pair": pair, "full_sweep_total_s": total, "environment": records.environment()})
    return text


if __name__ == "__main__":
    main()
