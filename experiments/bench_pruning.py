"""Benchmark: masked training throughput and the cost of one pruning step.

1. Training throughput (examples/s) of one jitted masked step (clip + masked(wd + SGD Nesterov))
   for the MLP (Fashion-MNIST shape), CNN and ResNet18 (CIFAR shape), beside the same step
   without the mask wrapper (baseline: plain optax chain).  Steps run inside the trainer's
   `lax.scan` epoch; compile time is reported separately.
2. One SAP pruning step (global / layer / neuron scope) and one magnitude (LT) step on ResNet18's
   11.2 M prunable parameters.  Global SAP is timed side by side with the previous implementation
   (per-leaf passes, kept below as `old_sap_global`) and both masks are checked to be identical;
   the baseline global threshold by a full sort is timed too.

Timing by `experiments/_timing.py`: AOT compile timed separately, `block_until_ready`, medians
of repeats, wall and process-CPU time (the CPU time is robust to a loaded machine).  Run:
    python -m experiments.bench_pruning [--quick] [--part all|prune|train] [--models resnet18 ...]
        [--out results/bench_pruning.json]
"""
from __future__ import annotations

from experiments import _env  # noqa: F401

# isort: split

import argparse
import functools
import operator
from pathlib import Path
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments._timing import Timing, time_call, time_host
from jsparse import pruning
from jsparse.core import records
from jsparse.pruning import models, rules, train


def _row(t: Timing, per: float = 1.0) -> dict:
    """Timing in ms (compile in s); `per` divides the per-call figures (e.g. examples per call)."""
    return {"compile_s": t.compile_s, "wall_ms": 1e3 * t.median_s, "cpu_ms": 1e3 * t.cpu_median_s,
            "min_wall_ms": 1e3 * min(t.times_s)}


def bench_training(name, shape, batch, steps, repeats, **kw):
    """Examples/s of one masked epoch (`steps` batches in the trainer's lax.scan) vs the unmasked chain."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch * steps,) + shape).astype(np.float32))
    y = jnp.asarray(rng.integers(0, 10, batch * steps).astype(np.int32))
    out = {}
    for variant in ("masked", "unmasked"):
        model = models.build(name, shape, 10, **kw)
        # baseline: the same chain without the mask wrapper
        plain = None if variant == "masked" else optax.chain(
            optax.clip_by_global_norm(1.0), optax.add_decayed_weights(5e-4),
            optax.sgd(optax.cosine_decay_schedule(0.1, 1000), momentum=0.9, nesterov=True))
        tr = train.Trainer(model, steps_per_round=1000, batch_size=batch, eval_batch_size=batch, optimizer=plain)
        params, bs = tr.init_params, tr.init_batch_stats
        if variant == "masked":
            masks = pruning.magnitude(0.5).prune(params, pruning.init_masks(params))
            state = tr.init_state(pruning.apply_masks(params, masks), bs, masks)
        else:
            state = train.TrainState(params, bs, tr.tx.init(params))
        t = time_call(tr.train_epoch, (state, x, y, jax.random.PRNGKey(0)), repeats=repeats)
        n = batch * steps
        out[variant] = {**_row(t), "examples_per_s": n / t.median_s,
                        "examples_per_cpu_s": n / max(t.cpu_median_s, 1e-12),
                        "examples_per_s_best": n / min(t.times_s)}
    out["mask_overhead"] = out["masked"]["wall_ms"] / out["unmasked"]["wall_ms"]
    # forward only (the trainer's jitted evaluation), to tell forward from backward cost
    t = time_call(tr.evaluate, (params, bs, x, y), repeats=repeats)
    out["forward_only"] = {**_row(t), "examples_per_s": batch * steps / t.median_s,
                           "examples_per_cpu_s": batch * steps / max(t.cpu_median_s, 1e-12)}
    return out


# --- the previous global SAP (commit 6f9e064), kept here as the side-by-side baseline ---------
def _summed(counts: Iterable[jax.Array]) -> jax.Array:
    """Elementwise total of integer histograms (at least one)."""
    return functools.reduce(operator.add, counts)


def _old_kth(values, c):
    """Previous radix select: one 65536-bin bincount per leaf, summed, for each of the two levels."""
    total = sum(v.size for v in values)
    c = jnp.clip(jnp.asarray(c, jnp.int32), 0, total - 1)
    bits = [jax.lax.bitcast_convert_type(v.ravel(), jnp.int32) for v in values]
    cum1 = jnp.cumsum(_summed(jnp.bincount(b >> 15, length=1 << 16) for b in bits))
    k = jnp.minimum(jnp.sum(cum1 <= c), (1 << 16) - 1).astype(jnp.int32)
    before = jnp.where(k > 0, cum1[jnp.maximum(k - 1, 0)], 0)
    hist2 = _summed(jnp.bincount(jnp.where((b >> 15) == k, b & 0x7FFF, 1 << 15), length=(1 << 15) + 1) for b in bits)
    j = jnp.minimum(jnp.sum(jnp.cumsum(hist2[: 1 << 15]) <= c - before), (1 << 15) - 1).astype(jnp.int32)
    return jax.lax.bitcast_convert_type((k << 15) | j, jnp.float32)


def old_sap_global(rule, params, masks):
    """Previous global SAP: per-leaf max, per-leaf PQ sums, materialised |w|, two summed histograms."""
    flat = jax.tree_util.tree_leaves_with_path(params)
    mleaves = jax.tree_util.tree_leaves(masks)
    sel = [i for i, (path, p) in enumerate(flat) if rule.filter(path, p)]
    w, m = [flat[i][1] for i in sel], [mleaves[i] for i in sel]
    sp, sq, d = rules.group_sums(rule, w, m, None)
    index, r, c = rules.sap_counts(rule, sp, sq, d)
    a = [jnp.where(y, jnp.abs(x), jnp.inf) for x, y in zip(w, m)]
    thr = jnp.where(c >= d, jnp.inf, _old_kth(a, c))
    return [y & (jnp.abs(x) >= thr) for x, y in zip(w, m)], index, c


def bench_prune(repeats):
    from flax import nnx

    model = models.build("resnet18", (32, 32, 3), 10)
    params = nnx.state(model, nnx.Param)
    masks = pruning.SAP().prune(params, pruning.init_masks(params))  # a realistic second-round mask
    n = sum(x.size for p, x in jax.tree_util.tree_leaves_with_path(params) if pruning.default_filter(p, x))
    out: dict[str, Any] = {"prunable": n, "leaves": sum(1 for p, x in jax.tree_util.tree_leaves_with_path(params)
                                        if pruning.default_filter(p, x))}
    sap = pruning.SAP(scope="global")
    # same run, same inputs: previous implementation first, then the fused one
    old = jax.jit(functools.partial(old_sap_global, sap))
    out["SAP global, previous (per-leaf passes)"] = _row(time_call(old, (params, masks), repeats=repeats))
    new = jax.jit(functools.partial(rules.prune_step, sap))
    out["SAP global, fused (this version)"] = _row(time_call(new, (params, masks), repeats=repeats))
    out["SAP global, fused, via rule.prune (incl. host validation)"] = _row(
        time_host(lambda: sap.prune(params, masks), repeats=repeats))
    got_old, got_new = old(params, masks), new(params, masks)
    flat_new = [x for (p, x), y in zip(jax.tree_util.tree_leaves_with_path(got_new.masks),
                                       jax.tree_util.tree_leaves_with_path(params)) if pruning.default_filter(*y)]
    out["fused_equals_previous"] = bool(all(np.array_equal(a, b) for a, b in zip(got_old[0], flat_new))
                                        and int(got_old[2]) == int(got_new.count))
    out["pruned_count"] = int(got_new.count)
    for label, rule in [("SAP layer", pruning.SAP(scope="layer")), ("SAP neuron", pruning.SAP(scope="neuron")),
                        ("LT magnitude 0.2, global", pruning.magnitude(0.2))]:
        step = jax.jit(functools.partial(rules.prune_step, rule))
        out[label] = _row(time_call(step, (params, masks), repeats=repeats))

    def sort_threshold(params, masks):  # baseline: the c-th smallest by a full sort
        leaves = [jnp.where(m, jnp.abs(p), jnp.inf).ravel() for (path, p), m in
                  zip(jax.tree_util.tree_leaves_with_path(params), jax.tree_util.tree_leaves(masks))
                  if pruning.default_filter(path, p)]
        return jnp.sort(jnp.concatenate(leaves))[n // 3]

    out["baseline: threshold only, by a full jnp.sort"] = _row(time_call(sort_threshold, (params, masks),
                                                                          repeats=max(2, repeats // 3)))
    return out


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m experiments.bench_pruning", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="3 repeats instead of 7, 2 timed CNN/ResNet18 steps instead of 4 (default: off)")
    ap.add_argument("--out", type=Path, default=Path("results/bench_pruning.json"),
                    help="JSON file written (after each part and training case)")
    ap.add_argument("--part", choices=["all", "prune", "train"], default="all",
                    help="prune: the pruning steps on ResNet18; train: the masked training throughput")
    ap.add_argument("--models", nargs="*", default=["mlp", "cnn", "resnet18"], choices=["mlp", "cnn", "resnet18"],
                    metavar="MODEL", help="training cases to run: mlp, cnn, resnet18 (default: all three)")
    return ap


def main(argv=None):
    a = build_parser().parse_args(argv)
    reps = 3 if a.quick else 7
    a.out.parent.mkdir(parents=True, exist_ok=True)
    res = {"environment": records.environment(), "training": {}, "prune": {}}
    if a.part in ("all", "prune"):
        res["prune"] = bench_prune(reps)
        p = res["prune"]
        print(f"pruning step on ResNet18 ({p['prunable']:,} prunable weights in {p['leaves']} leaves), "
              f"after compilation; fused masks identical to previous: {p['fused_equals_previous']} "
              f"({p['pruned_count']:,} pruned)")
        print("| step | median wall ms | min wall ms | median CPU ms (all threads) | compile s |\n"
              "|---|---|---|---|---|")
        for k, v in p.items():
            if isinstance(v, dict):
                print(f"| {k} | {v['wall_ms']:.1f} | {v['min_wall_ms']:.1f} | {v['cpu_ms']:.1f} | "
                      f"{v['compile_s']:.1f} |", flush=True)
        records.write_json(a.out, res)
    cases = {"mlp": ((28, 28, 1), 250, 8), "cnn": ((32, 32, 3), 32, 2 if a.quick else 4),
             "resnet18": ((32, 32, 3), 8, 2 if a.quick else 4)}
    for name in (a.models if a.part in ("all", "train") else []):
        shape, batch, steps = cases[name]
        res["training"][name] = {"batch": batch, "steps": steps, **bench_training(name, shape, batch, steps, reps)}
        r = res["training"][name]
        records.write_json(a.out, res)  # after each case: a slow or killed run keeps what it measured
        m, u = r["masked"], r["unmasked"]
        print(f"train {name:9s} batch {batch:3d} x {steps}: masked {m['examples_per_s']:9.1f} ex/s wall "
              f"({m['examples_per_cpu_s']:9.1f} per CPU-s, best {m['examples_per_s_best']:9.1f}), unmasked "
              f"{u['examples_per_s']:9.1f} ex/s wall ({u['examples_per_cpu_s']:9.1f} per CPU-s), "
              f"time ratio x{r['mask_overhead']:.2f} (compile {m['compile_s']:.1f} s); forward only "
              f"{r['forward_only']['examples_per_s']:.1f} ex/s wall "
              f"({r['forward_only']['examples_per_cpu_s']:.1f} per CPU-s)",
              flush=True)
    records.write_json(a.out, res)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
