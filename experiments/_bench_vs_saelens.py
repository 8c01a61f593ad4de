"""jsparse's train step against SAELens's trainer step, interleaved in one process
(`python -m experiments.bench_sae --vs-saelens`).

For every d and method: both steps are built, compiled (jsparse) and run once (warm-up, excluded);
then `rounds` times a block of `block` jsparse steps (the donated state fed back, one
block_until_ready at the block's end) alternates with a block of SAELens steps on the same shape
(batch `batch`, width 16 d, fixed random data). Reported: the median per-step time of each, tokens/s
= batch / step, the ratio jsparse / SAELens tokens/s, and the achieved rate of the products the
jsparse step executes (GFLOP/s) beside the machine's matmul rate measured in the same rounds on a
(batch, d) x (d, 16 d) product. Peak memory: each (library, method, d) in a child process that
imports only its own library, builds the SAE and runs two steps (peak resident set size).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from experiments import _saelens_step
from jsparse import sae
from jsparse.sae import losses
from jsparse.sae.train import build, init_state, make_step

VS_METHODS = ("topk", "relu_l1", "jumprelu", "batchtopk", "gba")


def jsparse_method(name: str, k: int = 32):
    options = {"gba": dict(update_every=10), "topk": dict(k=k), "batchtopk": dict(k=k)}.get(name, {})
    return sae.as_method(name, **options)


def jsparse_step(name: str, d: int, batch: int, formulation: str = "auto", seed: int = 0):
    """(run(n): n steps then block, the step's executed product FLOPs) for method `name`."""
    width = 16 * d
    method = jsparse_method(name).resolve(d, width)
    key = jax.random.PRNGKey(seed)
    model = build(method, d, width, key)
    opt = optax.adam(3e-4)
    x = jax.random.normal(jax.random.fold_in(key, 1), (batch, d), jnp.float32)
    step = make_step(nnx.graphdef(model), method.step_part(), opt, formulation=formulation)
    box = [init_state(model, opt, method, x, True)]

    def run(n: int):
        state = box[0]
        for _ in range(n):
            state, _ = step(state, x)
        box[0] = jax.block_until_ready(state)

    form = losses.resolve_formulation(formulation, batch, width, d)
    k = getattr(method, "k", width)
    if form == "fast" and name == "topk" and k <= losses.SPARSE_MAX_DENSITY * width:
        flops = 2 * batch * width * d + 12 * batch * k * d  # encoder product + six row passes
    else:
        flops = (5 if form == "fast" else 6) * 2 * batch * width * d
    return run, flops


def _matmul_rate(d: int, batch: int) -> float:
    a = jax.random.normal(jax.random.PRNGKey(5), (batch, d), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(6), (16 * d, d), jnp.float32)
    f = jax.jit(lambda a, b: a @ b.T).lower(a, b).compile()
    jax.block_until_ready(f(a, b))
    t0 = time.perf_counter()
    jax.block_until_ready(f(a, b))
    return 2 * batch * 16 * d * d / (time.perf_counter() - t0) / 1e9


def _block_time(run, block: int) -> float:
    t0 = time.perf_counter()
    run(block)
    return (time.perf_counter() - t0) / block


def compare(name: str, d: int, batch: int, rounds: int, block: int) -> dict:
    """Interleaved medians for one method at one d (module docstring)."""
    t0 = time.perf_counter()
    js, flops = jsparse_step(name, d, batch)
    js(1)
    js_setup = time.perf_counter() - t0
    sl_step = _saelens_step.make(name, d, batch)
    sl_step()
    js_t, sl_t, rates = [], [], []
    for _ in range(rounds):
        js_t.append(_block_time(js, block))
        sl_t.append(_block_time(lambda n: [sl_step() for _ in range(n)], block))
        rates.append(_matmul_rate(d, batch))
    js_s, sl_s = statistics.median(js_t), statistics.median(sl_t)
    return dict(method=name, saelens_arch=_saelens_step.ARCH[name], d=d, width=16 * d, batch=batch, rounds=rounds,
                block=block, jsparse_step_s=js_s, saelens_step_s=sl_s, jsparse_tokens_per_s=batch / js_s,
                saelens_tokens_per_s=batch / sl_s, ratio=sl_s / js_s, jsparse_times_s=js_t, saelens_times_s=sl_t,
                jsparse_setup_s=js_setup, jsparse_gflops=flops / js_s / 1e9,
                matmul_gflops=statistics.median(rates))


def peak_child(lib: str, name: str, d: int, batch: int) -> float | None:
    """Peak RSS (GiB) of a fresh process that builds `lib`'s SAE and runs two steps."""
    mod = "experiments._saelens_step" if lib == "saelens" else "experiments.bench_sae"
    flag = "--peak" if lib == "saelens" else "--peak-child"
    out = subprocess.run([sys.executable, "-m", mod, flag, name, str(d), str(batch)], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"  peak-memory child {lib} {name} d={d} failed: {out.stderr.strip()[-300:]}", flush=True)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_gib"]


def jsparse_peak(name: str, d: int, batch: int) -> dict:
    """The jsparse side of `peak_child` (run in the child)."""
    import resource

    run, _ = jsparse_step(name, d, batch)
    run(2)
    return dict(peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


def main(dims, methods, batch: int, rounds: int, block: int, memory: bool, memory_dims=None) -> list[dict]:
    advice = _saelens_step.available()
    if advice:
        raise SystemExit(f"--vs-saelens needs SAELens: {advice}")
    rows = []
    print(f"jsparse vs SAELens train step, batch {batch}, width 16 d, {rounds} interleaved rounds of {block} steps, "
          "medians (compile and warm-up excluded)")
    print(f"{'method':>10} {'d':>4} {'jsparse s':>9} {'tok/s':>7} {'SAELens s':>9} {'tok/s':>7} {'ratio':>6} "
          f"{'GFLOP/s':>8} {'matmul':>7} {'peak GiB js/SL':>15}", flush=True)
    for d in dims:
        for name in methods:
            r = compare(name, d, batch, rounds, block)
            mem = memory and (not memory_dims or d in memory_dims)
            if mem:
                r["jsparse_peak_rss_gib"] = peak_child("jsparse", name, d, batch)
                r["saelens_peak_rss_gib"] = peak_child("saelens", name, d, batch)
            mem = (f"{r['jsparse_peak_rss_gib'] or float('nan'):.2f}/{r['saelens_peak_rss_gib'] or float('nan'):.2f}"
                   if mem else "-")
            print(f"{name:>10} {d:>4} {r['jsparse_step_s']:>9.3f} {r['jsparse_tokens_per_s']:>7.0f} "
                  f"{r['saelens_step_s']:>9.3f} {r['saelens_tokens_per_s']:>7.0f} {r['ratio']:>5.2f}x "
                  f"{r['jsparse_gflops']:>8.1f} {r['matmul_gflops']:>7.1f} {mem:>15}", flush=True)
            rows.append(r)
    return rows
