"""SAE training throughput (tokens/s) per method, GBA's bias-update overhead, peak memory.

    python -m experiments.bench_sae                   # d = 384 and 768, width 16 d, batch 4096
    python -m experiments.bench_sae --dims 384 --reps 3 --big-run   # also run the 65,536 x 1536 step
    python -m experiments.bench_sae --vs-saelens --memory   # against SAELens's trainer step (the bench extra)

* --vs-saelens: jsparse's step and SAELens's `SAETrainer.step` (its defaults) interleaved in one
  process, TopK (k = 32), ReLU-L1, JumpReLU, BatchTopK (k = 32) and GBA (vs SAELens TopK), medians
  of alternating blocks, plus peak memory per library in child processes (`_bench_vs_saelens`).

* Each row times the same jitted train step that `jsparse.sae.train` uses (one optimiser step,
  row normalisation, method-specific state updates), on random data already on the device.
  Timed with `experiments._timing.time_call`: compilation separately (AOT), block_until_ready,
  median of `reps` wall-clock and CPU-process times (CPU time is robust to a loaded machine).
* GBA overhead, side by side in one run: (a) the GBA step vs the identical tied SAE step without
  the window statistics and bias rule ("gba_noadapt"); (b) vs a plain tied ReLU SAE step
  ("relu_tied": same parameters, ReLU(u + b_enc), no penalty).
* Peak memory at width 65,536, d = 1536, batch 4096: XLA's compiled memory analysis of the GBA
  step (arguments + outputs + temporaries; no allocation), and with --big-run the measured
  peak resident memory of the process around one executed step.
"""
from __future__ import annotations

from experiments import _env  # noqa: F401

# isort: split

import argparse
import json
import resource
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from experiments import _bench_vs_saelens as vs
from experiments._timing import time_call
from jsparse import sae
from jsparse.core import records
from jsparse.sae import gba
from jsparse.sae.train import build, init_state, make_step

# the library's methods plus two GBA references: without the window statistics and bias rule
# ("gba_noadapt"), and a plain tied ReLU SAE with the same parameters and no penalty ("relu_tied")
VARIANTS = {"gba_noadapt": sae.GBA(update_every=10, adapt=False),
            "relu_tied": sae.ReLUL1(l1=0.0, tied=True, output_scale=True)}
METHODS = ("gba", "gba_noadapt", "relu_tied", *sae.METHODS[1:])


def _method(name, k=32):
    if name in VARIANTS:
        return VARIANTS[name]
    return sae.as_method(name, **{"gba": dict(update_every=10), "ba": dict(target=0.02, update_every=10),
                                   "topk": dict(k=k), "batchtopk": dict(k=k)}.get(name, {}))


def _setup(name, d, width, batch, key, k=32):
    method = _method(name, k).resolve(d, width)
    model = build(method, d, width, key)
    opt = optax.adam(1e-3)
    x = jax.random.normal(jax.random.fold_in(key, 1), (batch, d), jnp.float32)
    state = init_state(model, opt, method, x, True)
    step = make_step(nnx.graphdef(model), method.step_part(), opt)
    return step, state, x


def time_methods(methods, d, width, batch, reps, key):
    """Every method's train step timed with `experiments._timing.time_call` (AOT compile timed
    separately, block_until_ready, median of `reps` wall and CPU-process times). The step is
    wrapped in an outer jit so the donated state can be passed again on every repeat."""
    rows = []
    for method in methods:
        step, state, x = _setup(method, d, width, batch, key)
        t = time_call(lambda s, x_, step=step: step(s, x_), (state, x), repeats=reps, warmup=1)
        rows.append(dict(method=method, d=d, width=width, batch=batch, reps=reps, **t.as_dict(),
                         median_step_s=t.median_s, cpu_step_s=t.cpu_median_s, tokens_per_s=batch / t.median_s))
    return rows


def rule_cost(d, width, batch, reps):
    """The GBA additions alone (window accumulation + end-of-window rule) on a (batch, width)
    pre-activation array, unfused: an upper bound on what they add to a step. Returns Timing."""
    cfg = gba.make_config(width, groups=10, update_every=1)  # the rule fires on every call

    def extra(bias, stats, y):
        stats = gba.accumulate(stats, y)
        return gba.maybe_update(bias, stats, jnp.int32(0), cfg)[:2]

    y = jax.random.normal(jax.random.PRNGKey(2), (batch, width), jnp.float32)
    return time_call(extra, (jnp.zeros((width,)), gba.init_stats(width), y), repeats=reps, warmup=1)


def memory_estimate(d=1536, width=65536, batch=4096, key=None):
    key = jax.random.PRNGKey(0) if key is None else key
    method = sae.GBA(update_every=10)
    model = build(method, d, width, key)
    opt = optax.adam(1e-3)
    spec = jax.ShapeDtypeStruct((batch, d), jnp.float32)
    state = init_state(model, opt, method, jnp.ones((8, d), jnp.float32), True)
    step = make_step(nnx.graphdef(model), method.step_part(), opt)
    t0 = time.perf_counter()
    compiled = step.lower(state, spec).compile()
    ma = compiled.memory_analysis()
    out = dict(d=d, width=width, batch=batch, compile_s=time.perf_counter() - t0)
    for name in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "alias_size_in_bytes"):
        out[name] = int(getattr(ma, name, 0) or 0)
    out["peak_estimate_gib"] = (out["argument_size_in_bytes"] + out["output_size_in_bytes"]
                                - out["alias_size_in_bytes"] + out["temp_size_in_bytes"]) / 2**30
    return out, compiled, state


def big_run(compiled, state, d, batch):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    x = jax.random.normal(jax.random.PRNGKey(9), (batch, d), jnp.float32)
    t0 = time.perf_counter()
    new, m = compiled(state, x)
    jax.block_until_ready((new, m))
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return dict(step_s=wall, peak_rss_gib=peak / 2**20, rss_before_gib=before / 2**20)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", type=int, nargs="+", default=[384, 768])
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--big-run", action="store_true", help="execute one step at width 65,536, d = 1536")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--out", default="results/bench_sae.json")
    ap.add_argument("--vs-saelens", action="store_true", help="interleaved comparison with SAELens's trainer step")
    ap.add_argument("--rounds", type=int, default=5, help="--vs-saelens: alternating blocks per library")
    ap.add_argument("--block", type=int, default=2, help="--vs-saelens: steps per block")
    ap.add_argument("--memory", action="store_true", help="--vs-saelens: peak RSS of each step in a child process")
    ap.add_argument("--memory-dims", type=int, nargs="+", help="--vs-saelens --memory: only at these d (default: all)")
    ap.add_argument("--peak-child", nargs=3, metavar=("METHOD", "D", "BATCH"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.peak_child:
        print(json.dumps(vs.jsparse_peak(a.peak_child[0], int(a.peak_child[1]), int(a.peak_child[2]))))
        return
    if a.vs_saelens:
        methods = a.methods if a.methods != list(METHODS) else list(vs.VS_METHODS)
        rows = vs.main(a.dims, methods, a.batch, a.rounds, a.block, a.memory, a.memory_dims)
        out = Path(a.out if a.out != "results/bench_sae.json" else "results/bench_sae_vs_saelens.json")
        records.write_json(out, dict(rows=rows, environment=records.environment(), settings=vars(a)))
        print(f"wrote {out}")
        return
    key = jax.random.PRNGKey(0)
    rows = []
    print(f"backend {jax.default_backend()}, batch {a.batch}, median of {a.reps} steps (compile excluded)")
    print(f"{'method':>12} {'d':>5} {'width':>6} {'compile s':>9} {'step s':>8} {'cpu s':>8} {'tokens/s':>10}")
    for d in a.dims:
        for r in time_methods(a.methods, d, 16 * d, a.batch, a.reps, key):
            rows.append(r)
            print(f"{r['method']:>12} {d:>5} {16 * d:>6} {r['compile_s']:>9.2f} {r['median_step_s']:>8.3f} "
                  f"{r['cpu_step_s']:>8.3f} {r['tokens_per_s']:>10.0f}", flush=True)
    overhead = {}
    for d in a.dims:
        rc = rule_cost(d, 16 * d, a.batch, max(a.reps, 5))
        by = {r["method"]: r for r in rows if r["d"] == d}
        base = by.get("relu_tied") or by.get("gba_noadapt")
        o = overhead.setdefault(d, {"rule_alone_s": rc.median_s, "rule_alone_cpu_s": rc.cpu_median_s})
        if base:
            o["rule_alone_vs_relu_step"] = rc.median_s / base["median_step_s"]
            o["rule_alone_vs_relu_step_cpu"] = rc.cpu_median_s / base["cpu_step_s"]
        for b in ("gba_noadapt", "relu_tied"):
            if "gba" in by and b in by:
                o[f"gba_vs_{b}"] = by["gba"]["median_step_s"] / by[b]["median_step_s"] - 1
                o[f"gba_vs_{b}_cpu"] = by["gba"]["cpu_step_s"] / by[b]["cpu_step_s"] - 1
        print(f"d={d}: GBA accumulation + rule alone {rc.median_s * 1e3:.1f} ms wall, "
              f"{rc.cpu_median_s * 1e3:.1f} ms CPU"
              + (f" = {100 * o['rule_alone_vs_relu_step']:.2f}% (wall) / {100 * o['rule_alone_vs_relu_step_cpu']:.2f}% "
                 "(CPU) of a plain tied ReLU step" if base else ""))
        print(f"d={d}: " + ", ".join(f"{k} {100 * v:+.1f}%" for k, v in o.items() if k.startswith("gba_vs")))
    mem = None
    if not a.no_memory:
        mem, compiled, state = memory_estimate(batch=a.batch)
        print(f"width 65,536, d 1536, batch {a.batch}: XLA peak estimate {mem['peak_estimate_gib']:.2f} GiB "
              f"(args {mem['argument_size_in_bytes'] / 2**30:.2f}, temp {mem['temp_size_in_bytes'] / 2**30:.2f} GiB)")
        if a.big_run:
            mem.update(big_run(compiled, state, 1536, a.batch))
            print(f"  executed one step: {mem['step_s']:.1f} s, process peak RSS {mem['peak_rss_gib']:.2f} GiB")
    out = Path(a.out)
    records.write_json(out, dict(rows=rows, overhead=overhead, memory=mem, environment=records.environment(),
                                 settings=vars(a)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
