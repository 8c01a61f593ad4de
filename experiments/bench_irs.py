"""Benchmark of the IRS-MIMO experiment's methods (run: python -m experiments.bench_irs).

Problem: the reference IRS setup (M = 288, N = 5832, complex128, known σ²), SNR in
{4, 8, 12, 16, 20} dB x `--trials` realisations with the experiment's shared pilots and
configurations (`experiments.irs.run.problem`), simulated once beforehand (not timed).
For every method (`experiments/_timing.time_call`): compile time (reported separately), then the
median over `--repeats` of one vmapped dispatch over the whole batch (block_until_ready), wall and
CPU (process) time, per run, and extrapolated to the paper's full sweep (5 SNRs x 50
realisations = 250 runs). CPU time is the figure to compare on a shared machine.
Side by side in the same run: cSBL with the structured E-step (`pc.csbl_kron`) against the
dense `sbl.sbl` on the 288 x 5832 matrix (the named baseline; one problem, `--dense-iters`
EM iterations each, so that the dense version stays affordable).
Writes results/bench_irs.json (or --out) and prints a Markdown table.
"""
from __future__ import annotations

from experiments import _env  # noqa: F401  (XLA flag before jax import)

# isort: split

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

from experiments._timing import time_call  # noqa: E402
from experiments.irs.run import LABELS, METHODS, SNRS, estimate, problem  # noqa: E402
from jsparse.core import records  # noqa: E402
from jsparse.core.kron import kron_dense  # noqa: E402
from jsparse.sbl import pc, sbl  # noqa: E402

FULL_RUNS = len(SNRS) * 50


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m experiments.bench_irs", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--trials", type=int, default=4, help="realisations per SNR in the timed batch")
    ap.add_argument("--repeats", type=int, default=3, help="timed dispatches per method (the median is reported)")
    ap.add_argument("--methods", nargs="*", default=METHODS, choices=METHODS + ["oracle"], metavar="METHOD",
                    help=f"methods to time, any of {', '.join(METHODS + ['oracle'])} "
                         f"(default: {' '.join(METHODS)})")
    ap.add_argument("--dense-iters", type=int, default=5, help="EM iterations for the dense-vs-structured cSBL pair")
    ap.add_argument("--out", type=Path, default=Path("results/bench_irs.json"), help="JSON file written")
    return ap


def main(argv=None):
    a = build_parser().parse_args(argv)

    keys = jax.vmap(lambda t: jax.random.fold_in(jax.random.PRNGKey(0), t))(jnp.arange(a.trials))
    snr = jnp.repeat(jnp.asarray(SNRS), a.trials)
    keys = jnp.tile(keys, (len(SNRS), 1))
    sim = jax.vmap(lambda k, s: problem(jax.random.split(k)[0], s, "complex128", "fixed", 0))
    problems = jax.jit(sim)(keys, snr)
    batch = int(snr.shape[0])

    rows = []
    for m in a.methods:
        t = time_call(jax.vmap(lambda p, m=m: estimate(m, p)[0]), (problems,), repeats=a.repeats)
        per_run, per_run_cpu = t.median_s / batch, t.cpu_median_s / batch
        rows.append({"method": m, "compile_s": t.compile_s, "batch_s": t.median_s, "batch_cpu_s": t.cpu_median_s,
                     "per_run_s": per_run, "per_run_cpu_s": per_run_cpu,
                     "full_sweep_s": per_run * FULL_RUNS, "full_sweep_cpu_s": per_run_cpu * FULL_RUNS,
                     "times_s": list(t.times_s)})
        print(f"{m}: compile {t.compile_s:.1f} s, {per_run:.3f} s/run wall, {per_run_cpu:.3f} s/run CPU", flush=True)

    p0 = jax.tree_util.tree_map(lambda v: v[0], problems)
    h = kron_dense(p0.factors)
    pair = []

    def structured(p):
        return pc.csbl_kron(p.y, p.factors, noise_var=p.noise_var, max_iters=a.dense_iters, tol=0.0).x

    def dense(p, h):
        return sbl(p.y, h, noise_var=p.noise_var, prune=1e-4, max_iters=a.dense_iters, tol=0.0).x

    for name, fn, args in (
        ("cSBL structured (pc.csbl_kron)", structured, (p0,)),
        ("cSBL dense (sbl.sbl, baseline)", dense, (p0, h)),
    ):
        t = time_call(fn, args, repeats=a.repeats)
        pair.append({"variant": name, "iterations": a.dense_iters, "compile_s": t.compile_s, "run_s": t.median_s,
                     "per_iteration_s": t.median_s / a.dense_iters,
                     "per_iteration_cpu_s": t.cpu_median_s / a.dense_iters})

    total = sum(r["full_sweep_s"] for r in rows)
    total_cpu = sum(r["full_sweep_cpu_s"] for r in rows)
    lines = ["| method | compile (s) | per run, wall (s) | per run, CPU (s) | full sweep 250 runs, wall (s) "
             "| full sweep, CPU (s) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {LABELS[r['method']]} | {r['compile_s']:.1f} | {r['per_run_s']:.3f} | {r['per_run_cpu_s']:.3f} | "
              f"{r['full_sweep_s']:.0f} | {r['full_sweep_cpu_s']:.0f} |" for r in rows]
    compile_total = sum(r["compile_s"] for r in rows)
    lines.append(f"| **all methods** | {compile_total:.0f} | | | **{total:.0f}** | **{total_cpu:.0f}** |")
    lines += ["", "| cSBL E-step | compile (s) | per EM iteration, wall (s) | CPU (s) |", "|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['compile_s']:.1f} | {r['per_iteration_s']:.3f} | {r['per_iteration_cpu_s']:.3f} |"
              for r in pair]
    text = (f"IRS benchmark: complex128, batch of {batch} runs ({a.trials} realisations x {len(SNRS)} SNRs), "
            f"median of {a.repeats} repeats, compilation excluded.\n\n" + "\n".join(lines) + "\n")
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    records.write_json(a.out, {"settings": vars(a) | {"out": str(a.out), "batch": batch}, "methods": rows,
                               "csbl_pair": pair, "full_sweep_total_s": total, "full_sweep_total_cpu_s": total_cpu,
                               "environment": records.environment()})
    return text


if __name__ == "__main__":
    main()
