"""Benchmark of the SBL family at the paper's default size (run: python -m experiments.bench_sbl).

Problem: N_i = 15 (N = 3375), M = (8, 12, 15) (M = 1440), K = 3, 25 dB, unknown σ²,
float64. Reports (compile excluded and reported separately; every result block_until_ready'd;
medians over repeats):
  * SVD / AM / KSBL: one trial, and 200 trials in one program (vmapped batches of 25);
  * classic SBL in JAX (Cholesky, M-side) vs the NumPy port of the reference code (pinv and the
    full N x N Σ, as classicSBL.m does) — a fixed 5 EM iterations each (--csbl-iters), same problem,
    same run, and the relative difference of their estimates;
  * peak memory (ru_maxrss of a fresh subprocess) of one SVD-KroSBL trial at N_i = 32 (N = 32768,
    M = (16, 24, 32)); the dense formulation would need N² x 8 B = 8.6 GB for Σ alone;
  * scaling of per-trial time with N_i in {10, 15, 20, 32}.
Writes results/bench_sbl.json (or --out) and prints a Markdown table.
"""
from __future__ import annotations

from experiments import _env  # noqa: F401  (XLA flag before jax import)

# isort: split

import os  # noqa: E402

# Besides _env's scheduler flag: single-threaded Eigen/intra-op work. The vmapped-eigh deadlock
# (docs/troubleshooting.md) still hit two of our batched runs on a heavily shared 2-core machine;
# one intra-op thread per process costs little when many processes share two cores.
if "--xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

import argparse
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from experiments._timing import time_call, time_host  # noqa: E402
from jsparse.core import records  # noqa: E402
from jsparse.core.kron import kron_dense  # noqa: E402
from jsparse.sbl import krosbl, sbl  # noqa: E402
from jsparse.sbl.synthetic import kron_problem  # noqa: E402

PAPER_N, PAPER_M = (15, 15, 15), (8, 12, 15)


def numpy_csbl(y, H, iters, prune=1e-3):
    """What a Python user porting classicSBL.m would write: pinv, the full N x N Σ, column deletion.

    Like the reference (and `sbl.sbl`), the estimate is re-computed after the loop from the final,
    pruned γ. (Returning the last E-step's μ instead is one EM iteration behind: at the paper size
    it differs from the re-estimate by ~1e-1 after 10 iterations.)"""
    n = H.shape[1]
    keep, g = np.arange(n), np.ones(n)
    s2 = 0.1 * np.var(y)
    for _ in range(iters):
        ok = g >= prune * g.max()
        g, keep = g[ok], keep[ok]
        Hk = H[:, keep]
        G = np.diag(g)
        Sigma = G - G @ Hk.T @ np.linalg.pinv(s2 * np.eye(H.shape[0]) + Hk @ G @ Hk.T) @ Hk @ G
        mu = Sigma @ Hk.T @ y / s2
        dsig = np.diag(Sigma)
        s2 = (np.sum((y - Hk @ mu) ** 2) + s2 * np.sum(1 - dsig / g)) / y.shape[0]
        g = dsig + mu**2
    ok = g >= prune * g.max()
    g, keep = g[ok], keep[ok]
    Hk = H[:, keep]
    x = np.zeros(n)
    x[keep] = g * (Hk.T @ np.linalg.pinv(s2 * np.eye(H.shape[0]) + (Hk * g) @ Hk.T) @ y)
    return x


def problems(n, m, batch, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), batch)
    return jax.vmap(lambda k: kron_problem(k, n, m, 3, 25.0, dtype=jnp.float64))(keys)


def bench_kron(batch):
    p = problems(PAPER_N, PAPER_M, batch)
    rows = {}
    for meth in ("svd", "am", "ksbl"):
        one = jax.jit(lambda y, f, meth=meth: krosbl(y, f, method=meth).x)
        # 200 trials as lax.map over vmapped batches of 25: a single vmapped batch of 200 hit the
        # batched-eigh deadlock twice on the shared 2-core machine (docs/troubleshooting.md).
        def in_batches(Y, F, meth=meth):
            return jax.lax.map(lambda a: krosbl(a[0], a[1], method=meth).x, (Y, F), batch_size=25)

        many = jax.jit(in_batches)
        first = (p.y[0], tuple(f[0] for f in p.factors))
        t1 = time_call(one, first, repeats=5)
        tb = time_call(many, (p.y, p.factors), repeats=2)
        rows[meth] = {"single_s": t1.median_s, "single_cpu_s": t1.cpu_median_s, "single_compile_s": t1.compile_s,
                      f"batch{batch}_s": tb.median_s, f"batch{batch}_cpu_s": tb.cpu_median_s,
                      "batch_per_trial_s": tb.median_s / batch, "batch_compile_s": tb.compile_s}
    return rows


def bench_csbl(iters=5):
    """Dense cSBL, a fixed `iters` EM iterations: JAX (M-side Cholesky) vs the NumPy port."""
    p = problems(PAPER_N, PAPER_M, 1)
    y, H = p.y[0], kron_dense([f[0] for f in p.factors])
    fn = jax.jit(lambda y, H: sbl(y, H, max_iters=iters, tol=0.0).x)
    tj = time_call(fn, (y, H), repeats=3)
    # The same iterates through the structured E-step (sbl(y, factors)): no M x N matrix.
    fk = jax.jit(lambda y, fs: sbl(y, fs, max_iters=iters, tol=0.0).x)
    factors = tuple(f[0] for f in p.factors)
    tk = time_call(fk, (y, factors), repeats=3)
    yn, Hn = np.asarray(y), np.asarray(H)
    out = []  # ~minutes per call: time_host's warm-up call + one timed call; keep the last result
    tn = time_host(lambda: out.append(numpy_csbl(yn, Hn, iters)), repeats=1)
    xn = out[-1]
    agree = float(np.linalg.norm(np.asarray(fn(y, H)) - xn) / np.linalg.norm(xn))
    return {"iters": iters, "jax_s": tj.median_s, "jax_cpu_s": tj.cpu_median_s, "jax_compile_s": tj.compile_s,
            "numpy_port_s": tn.median_s, "numpy_port_cpu_s": tn.cpu_median_s,
            "speedup": tn.median_s / tj.median_s, "speedup_cpu": tn.cpu_median_s / tj.cpu_median_s, "rel_diff_x": agree,
            "jax_kron_s": tk.median_s, "jax_kron_cpu_s": tk.cpu_median_s, "jax_kron_compile_s": tk.compile_s,
            "rel_diff_kron_dense": float(np.linalg.norm(np.asarray(fk(y, factors) - fn(y, H))) / np.linalg.norm(xn))}


_SCALE_SNIPPET = """
import resource, json, sys
from experiments import _env
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
from jsparse.sbl import krosbl
from jsparse.sbl.synthetic import kron_problem
from jsparse.core.metrics import nmse
from experiments._timing import time_call
n, m = tuple(json.loads(sys.argv[1])), tuple(json.loads(sys.argv[2]))
p = kron_problem(jax.random.PRNGKey(0), n, m, 3, 25.0, dtype=jnp.float64)
f = jax.jit(lambda y, fs: krosbl(y, fs).x)
t = time_call(f, (p.y, p.factors), repeats=3)
x = f(p.y, p.factors).block_until_ready()
peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"n": n, "m": m, "N": int(x.shape[0]), "run_s": t.median_s, "cpu_s": t.cpu_median_s,
                  "compile_s": t.compile_s, "nmse": float(nmse(x, p.x)), "peak_rss_mb": peak_rss_mb}))
"""


def bench_scale(sizes):
    out = []
    for ni in sizes:
        n = (ni, ni, ni)
        m = (max(2, round(ni / 2)), round(3 * ni / 4), ni)
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        res = subprocess.run([sys.executable, "-c", _SCALE_SNIPPET, json.dumps(n), json.dumps(m)],
                             capture_output=True, text=True, env=env, timeout=900)
        if res.returncode != 0:
            out.append({"n": n, "m": m, "error": res.stderr[-500:]})
        else:
            out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def _csbl_line(c: dict | None) -> str:
    """One sentence on the cSBL comparison ("" when it was not run or predates CPU times)."""
    if c is None or "jax_cpu_s" not in c:
        return ""
    return (f"cSBL, {c['iters']} EM iterations at M = 1440, N = 3375: JAX {c['jax_s']:.2f} s "
            f"(CPU {c['jax_cpu_s']:.2f} s, compile {c['jax_compile_s']:.1f} s), "
            f"NumPy port {c['numpy_port_s']:.2f} s (CPU {c['numpy_port_cpu_s']:.2f} s), "
            f"speed-up {c['speedup']:.1f}x (CPU time {c['speedup_cpu']:.1f}x), "
            f"relative difference of x {c['rel_diff_x']:.1e}; "
            f"structured E-step sbl(y, factors) {c['jax_kron_s']:.2f} s (CPU {c['jax_kron_cpu_s']:.2f} s), "
            f"vs dense {c['rel_diff_kron_dense']:.1e}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--out", default="results/bench_sbl.json")
    ap.add_argument("--sizes", default="10,15,20,32")
    ap.add_argument("--csbl-iters", type=int, default=5, help="fixed EM iterations of the cSBL comparison")
    ap.add_argument("--parts", default="kron,csbl,scale", help="comma-separated subset of kron,csbl,scale; "
                    "parts not run keep their entry from an existing --out file")
    a = ap.parse_args(argv)
    parts = set(a.parts.split(","))
    load0 = os.getloadavg()
    res = records.read_json(a.out) if Path(a.out).exists() else {}
    if "cpu" not in json.dumps(res):  # a file from before CPU times were recorded: start afresh
        res = {}
    if "kron" in parts:
        res["kron"] = bench_kron(a.batch)
    if "csbl" in parts:
        res["csbl"] = bench_csbl(a.csbl_iters)
    if "scale" in parts:
        res["scale"] = bench_scale([int(s) for s in a.sizes.split(",")])
    res.update(loadavg_before=load0, loadavg_after=os.getloadavg(), parts_run=sorted(parts),
               environment=records.environment())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    records.write_json(a.out, records.to_builtin(res))
    lines = [f"| method | 1 trial (s) | CPU (s) | compile (s) | batch of {a.batch}: s/trial | batch total (s) "
             "| batch CPU (s) | batch compile (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for meth, r in res.get("kron", {}).items():
        lines.append(f"| {meth} | {r['single_s']:.3f} | {r['single_cpu_s']:.3f} | {r['single_compile_s']:.1f} "
                     f"| {r['batch_per_trial_s']:.4f} | "
                     f"{r[f'batch{a.batch}_s']:.2f} | {r[f'batch{a.batch}_cpu_s']:.2f} | {r['batch_compile_s']:.1f} |")
    lines += ["", _csbl_line(res.get("csbl")), "",
              "| N_i | N | M | SVD-KroSBL s/trial | CPU s/trial | compile (s) | peak RSS (MB) | NMSE |",
              "|---|---|---|---|---|---|---|---|"]
    for s in res.get("scale", []):
        if "error" in s:
            lines.append(f"| {s['n'][0]} | error: {s['error'][-120:]} |")
        else:
            lines.append(f"| {s['n'][0]} | {s['N']} | {int(np.prod(s['m']))} | {s['run_s']:.3f} | {s['cpu_s']:.3f} "
                         f"| {s['compile_s']:.1f} | {s['peak_rss_mb']:.0f} | {s['nmse']:.1e} |")
    lines.append(f"\nload average before/after: {load0} / {res['loadavg_after']}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
