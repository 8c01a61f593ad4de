"""Benchmark: masked training throughput and the cost of one pruning step.

1. Training throughput (examples/s) of one jitted masked step (clip + masked(wd + SGD Nesterov))
   for the MLP (Fashion-MNIST shape), CNN and ResNet18 (CIFAR shape), beside the same step
   without the mask wrapper (baseline: plain optax chain).  Steps run inside the trainer's
   `lax.scan` epoch; compile time is reported separately.
2. One SAP pruning step (global / layer / neuron scope) and one magnitude (LT) step on ResNet18's
   11.2 M prunable parameters, beside the baseline global threshold by a full sort.

Medians of repeats, `block_until_ready`, compilation excluded.  Run:
    python -m experiments.bench_pruning [--quick] [--part all|prune|train] [--out results/bench_pruning.json]
"""
from __future__ import annotations

from experiments import _env  # noqa: F401

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jsparse import pruning
from jsparse.core import records
from jsparse.pruning import models, train


_STATS = {}


def _time(fn, repeats):
    """(compile s, median wall s).  Also leaves min wall and median process-CPU s in _STATS:
    on a shared machine the minimum and the CPU time estimate the uncontended cost."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    compile_s = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    _STATS.update(min_s=min(times), cpu_s=statistics.median(cpu))
    return compile_s, statistics.median(times)


def bench_training(name, shape, batch, steps, repeats, **kw):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch * steps,) + shape).astype(np.float32))
    y = jnp.asarray(rng.integers(0, 10, batch * steps).astype(np.int32))
    out = {}
    for variant in ("masked", "unmasked"):
        model = models.build(name, shape, 10, **kw)
        tr = train.Trainer(model, steps_per_round=1000, batch_size=batch)
        params, bs = tr.init_params, tr.init_batch_stats
        if variant == "masked":
            masks = pruning.magnitude(0.5).prune(params, pruning.init_masks(params))
            state = tr.init_state(pruning.apply_masks(params, masks), bs, masks)
        else:  # baseline: the same chain without the mask wrapper
            tr.tx = optax.chain(optax.clip_by_global_norm(1.0), optax.add_decayed_weights(5e-4),
                                optax.sgd(optax.cosine_decay_schedule(0.1, 1000), momentum=0.9, nesterov=True))
            state = train.TrainState(params, bs, tr.tx.init(params))
        key = jax.random.PRNGKey(0)
        comp, med = _time(lambda: tr.train_epoch(state, x, y, key), repeats)
        out[variant] = {"compile_s": comp, "epoch_s": med, "examples_per_s": batch * steps / med,
                        "examples_per_s_best": batch * steps / _STATS["min_s"]}
    out["mask_overhead"] = out["masked"]["epoch_s"] / out["unmasked"]["epoch_s"]
    return out


def bench_prune(repeats):
    model = models.build("resnet18", (32, 32, 3), 10)
    from flax import nnx

    params = nnx.state(model, nnx.Param)
    masks = pruning.init_masks(params)
    masks = pruning.SAP().prune(params, masks)  # a realistic second-round mask
    n = sum(x.size for p, x in jax.tree_util.tree_leaves_with_path(params) if pruning.default_filter(p, x))
    out = {"prunable": n}
    for label, rule in [("SAP global", pruning.SAP(scope="global")), ("SAP layer", pruning.SAP(scope="layer")),
                        ("SAP neuron", pruning.SAP(scope="neuron")), ("LT magnitude global", pruning.magnitude(0.2))]:
        comp, med = _time(lambda: rule.prune(params, masks), repeats)
        out[label] = {"compile_s": comp, "step_ms": 1e3 * med, "min_ms": 1e3 * _STATS["min_s"],
                      "cpu_ms": 1e3 * _STATS["cpu_s"]}

    @jax.jit
    def sort_threshold(params, masks):  # baseline: the c-th smallest by a full sort
        leaves = [jnp.where(m, jnp.abs(p), jnp.inf).ravel() for (path, p), m in
                  zip(jax.tree_util.tree_leaves_with_path(params), jax.tree_util.tree_leaves(masks))
                  if pruning.default_filter(path, p)]
        return jnp.sort(jnp.concatenate(leaves))[n // 3]

    comp, med = _time(lambda: sort_threshold(params, masks), max(2, repeats // 3))
    out["baseline full sort (threshold only)"] = {"compile_s": comp, "step_ms": 1e3 * med,
                                                  "min_ms": 1e3 * _STATS["min_s"], "cpu_ms": 1e3 * _STATS["cpu_s"]}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, smaller ResNet18 batch")
    ap.add_argument("--out", type=Path, default=Path("results/bench_pruning.json"))
    ap.add_argument("--part", choices=["all", "prune", "train"], default="all")
    a = ap.parse_args(argv)
    reps = 3 if a.quick else 7
    a.out.parent.mkdir(parents=True, exist_ok=True)
    res = {"environment": records.environment(), "training": {}, "prune": {}}
    if a.part in ("all", "prune"):
        res["prune"] = bench_prune(reps)
        print(f"pruning step on ResNet18 ({res['prune']['prunable']:,} prunable weights), after compilation:")
        print("| step | median wall ms | min wall ms | median CPU ms (all threads) | compile s |\n|---|---|---|---|---|")
        for k, v in res["prune"].items():
            if isinstance(v, dict):
                print(f"| {k} | {v['step_ms']:.1f} | {v['min_ms']:.1f} | {v['cpu_ms']:.1f} | {v['compile_s']:.1f} |", flush=True)
        records.write_json(a.out, res)
    cases = [("mlp", (28, 28, 1), 250, 8, {}), ("cnn", (32, 32, 3), 32 if a.quick else 64, 2 if a.quick else 4, {}),
             ("resnet18", (32, 32, 3), 8 if a.quick else 32, 1 if a.quick else 2, {})]
    for name, shape, batch, steps, kw in (cases if a.part in ("all", "train") else []):
        res["training"][name] = {"batch": batch, "steps": steps, **bench_training(name, shape, batch, steps, reps, **kw)}
        r = res["training"][name]
        records.write_json(a.out, res)  # after each case: a slow or killed run keeps what it measured
        print(f"train {name:9s} batch {batch:3d}: masked {r['masked']['examples_per_s']:9.1f} ex/s "
              f"(best {r['masked']['examples_per_s_best']:9.1f}), unmasked {r['unmasked']['examples_per_s']:9.1f} ex/s "
              f"(best {r['unmasked']['examples_per_s_best']:9.1f}), overhead x{r['mask_overhead']:.2f} "
              f"(compile {r['masked']['compile_s']:.1f} s)", flush=True)
    records.write_json(a.out, res)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
