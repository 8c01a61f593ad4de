"""Benchmark: RRLbS in JAX vs a NumPy implementation of the same updates (same run, ratio).

    python -m experiments.bench_unmixing [--quick] [--out results/bench_unmixing.json] [--data-root DIR]

* Per iteration on Jasper Ridge (198 bands x 10000 pixels, R = 4; a synthetic scene of the same
  size when the file is absent), float64, from the same VCA-FCLS start: the median over repeats of
  (time of n iterations) / n, compilation excluded (reported separately).
* To convergence: both run with the same stopping rule (relative objective change < tol).
* A batch of 32 synthetic 50 x 50 images: vmap vs `jax.lax.map` vs a Python loop over the same
  compiled program, with and without the VCA-FCLS start; and the three matmul shapes of one
  iteration alone (batched 3-D dot vs 2-D dots), to locate the CPU batch slowdown.
Timing: experiments/_timing.py (compile excluded, medians, wall and CPU process time).
"""
from __future__ import annotations

from experiments import _env  # noqa: F401  (XLA flags before jax)

# isort: split
import argparse
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments._timing import time_call, time_host
from jsparse import unmixing as U
from jsparse.core import records
from jsparse.unmixing import datasets, synthetic


# ------------------------------------------------------------------ NumPy reference implementation
def _np_project_simplex(v, total):
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - total
    k = np.arange(1, v.size + 1)
    rho = np.count_nonzero(u - css / k > 0)
    return np.maximum(v - css[rho - 1] / rho, 0.0)


def numpy_rrlbs(Y, M, A, *, lam, gamma, delta=15.0, p=0.5, max_iters=100, tol=0.0):
    """The RRLbS updates of jsparse.unmixing.mu in plain NumPy (float64); returns (M, A, h, objs)."""
    L, N = Y.shape
    eps = 1e-6 * np.sqrt(np.sum(Y * Y) / L)
    tau = 1.0 / np.mean(1.0 / np.sqrt(np.sum((Y - M @ A) ** 2, axis=1) + eps**2))
    d2, floor = delta**2, 1e-9

    def h_of(A):
        return _np_project_simplex(-lam * np.sum(A**p, axis=0) / (2 * gamma), float(N))

    def obj(M, A, h):
        E = Y - M @ A
        return (tau * np.sum(np.sqrt(np.sum(E * E, axis=1) + eps**2)) + 0.5 * d2 * np.sum((A.sum(0) - 1) ** 2)
                + lam * np.sum(h * np.sum(A**p, axis=0)) + gamma * np.sum(h * h))

    h = h_of(A)
    objs = [obj(M, A, h)]
    for _ in range(max_iters):
        M = M * (Y @ A.T) / (M @ (A @ A.T) + 1e-30)
        w = tau / np.sqrt(np.sum((Y - M @ A) ** 2, axis=1) + eps**2)
        WM = w[:, None] * M
        num = WM.T @ Y + d2
        den = (M.T @ WM) @ A + d2 * A.sum(0, keepdims=True) + lam * p * h[None] * np.maximum(A, floor) ** (p - 1)
        A = A * num / (den + 1e-30)
        h = h_of(A)
        objs.append(obj(M, A, h))
        if abs(objs[-2] - objs[-1]) / abs(objs[-2]) < tol:
            break
    return M, A, h, np.array(objs[1:])


def batched_matmul_micro(B=32, L=198, N=2500, R=4, repeats=5) -> dict:
    """The products of one MU iteration for B images: one batched (3-D) dot vs B 2-D dots.

    Isolates the cost of XLA:CPU's batched dot_general (what vmap turns each matmul into) from
    the rest of the iteration. Same float64 inputs, compile excluded (experiments/_timing.py).
    """
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(3), 3)
    Y = jax.random.uniform(k1, (B, L, N), jnp.float64)
    M = jax.random.uniform(k2, (B, L, R), jnp.float64)
    A = jax.random.uniform(k3, (B, R, N), jnp.float64)
    hi = jax.lax.Precision.HIGHEST
    prods = {  # name -> single-image function of (Y, M, A)
        "Y A^T (L x N)(N x R)": lambda Y, M, A: jnp.matmul(Y, A.T, precision=hi),
        "M^T Y (R x L)(L x N)": lambda Y, M, A: jnp.matmul(M.T, Y, precision=hi),
        "M A (L x R)(R x N)": lambda Y, M, A: jnp.matmul(M, A, precision=hi),
    }
    out = {}
    for name, f in prods.items():
        vm = time_call(jax.jit(jax.vmap(f)), (Y, M, A), repeats=repeats)
        lm = time_call(jax.jit(lambda Y, M, A, f=f: jax.lax.map(lambda t: f(*t), (Y, M, A))), (Y, M, A),
                       repeats=repeats)
        one = jax.jit(f)
        loop = time_host(lambda: [one(Y[b], M[b], A[b]) for b in range(B)], repeats=repeats)
        out[name] = {"vmap_ms": 1e3 * vm.median_s, "vmap_cpu_ms": 1e3 * vm.cpu_median_s,
                     "lax_map_ms": 1e3 * lm.median_s, "lax_map_cpu_ms": 1e3 * lm.cpu_median_s,
                     "loop_ms": 1e3 * loop.median_s, "loop_cpu_ms": 1e3 * loop.cpu_median_s}
    return out


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m experiments.bench_unmixing", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="20 timed iterations x 3 repeats, convergence capped at 300 iterations, 50 iterations "
                         "in the batch study (default: 50 x 5, cap 2000, 100)")
    ap.add_argument("--out", type=Path, default=Path("results/bench_unmixing.json"), help="JSON file written")
    ap.add_argument("--data-root", type=Path, default=None,
                    help="folder holding jasper/, searched alone (default: $JSPARSE_HSI_ROOT, the user folder, "
                         "then the bundled scenes; a synthetic scene of the same size when Jasper Ridge is absent)")
    return ap


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    from experiments.unmixing.scenes import default_data_root

    n_iter, repeats, conv_cap = (20, 3, 300) if args.quick else (50, 5, 2000)
    try:
        d = datasets.load_dataset("jasper", root=args.data_root or default_data_root())
        Y, source = jnp.asarray(d.Y), "Jasper Ridge"
    except FileNotFoundError:
        M = synthetic.smooth_endmembers(jax.random.PRNGKey(0), 198, 4, jnp.float64)
        Y, source = synthetic.make_scene(jax.random.PRNGKey(1), M, (100, 100)).Y, "synthetic 198 x 10000"
    R = 4
    M0, A0 = U.initial_point(Y, R, jax.random.PRNGKey(0), fcls_iters=200)  # rrlbs's floored VCA-FCLS start
    lam = float(U.sparsity_lambda(Y))
    gamma = lam / 8.0
    Yn, M0n, A0n = (np.asarray(x) for x in (Y, M0, A0))

    def jax_call(iters, tol):
        return jax.jit(lambda Y, M0, A0: U.rrlbs(Y, R, init_endmembers=M0, init_abundances=A0, max_iters=iters,
                                                  tol=tol, lam=lam, gamma=gamma))

    out = {"source": source, "shape": list(Y.shape), "R": R, "dtype": "float64", "environment": records.environment(),
           "load_average_at_start": os.getloadavg()}  # other processes on the machine skew absolute times
    targs = (Y, M0, A0)
    tj = time_call(jax_call(n_iter, 0.0), targs, repeats=repeats)
    out["jax_compile_s"] = tj.compile_s
    tn = time_host(lambda: numpy_rrlbs(Yn, M0n, A0n, lam=lam, gamma=gamma, max_iters=n_iter), repeats=repeats)
    out["per_iteration_ms"] = {"jax": 1e3 * tj.median_s / n_iter, "numpy": 1e3 * tn.median_s / n_iter,
                               "numpy_over_jax": tn.median_s / tj.median_s,
                               "jax_cpu": 1e3 * tj.cpu_median_s / n_iter, "numpy_cpu": 1e3 * tn.cpu_median_s / n_iter,
                               "numpy_over_jax_cpu": tn.cpu_median_s / tj.cpu_median_s}
    # Same updates? (checks the NumPy code is the same algorithm)
    r = jax_call(n_iter, 0.0)(*targs)
    Mn, An, _, objs = numpy_rrlbs(Yn, M0n, A0n, lam=lam, gamma=gamma, max_iters=n_iter)
    out["max_rel_objective_diff"] = float(np.max(np.abs(np.asarray(r.objective) - objs) / np.abs(objs)))

    # To convergence (same rule: relative objective change < 1e-6, capped).
    conv = jax_call(conv_cap, 1e-6)
    tc = time_call(conv, targs, repeats=1)
    rc = conv(*targs)
    _, _, _, objs = numpy_rrlbs(Yn, M0n, A0n, lam=lam, gamma=gamma, max_iters=conv_cap, tol=1e-6)
    tnc = time_host(lambda: numpy_rrlbs(Yn, M0n, A0n, lam=lam, gamma=gamma, max_iters=conv_cap, tol=1e-6), repeats=1)
    out["to_convergence"] = {"tol": 1e-6, "cap": conv_cap, "jax_iterations": int(rc.iterations), "jax_s": tc.median_s,
                             "numpy_iterations": len(objs), "numpy_s": tnc.median_s,
                             "numpy_over_jax": tnc.median_s / tc.median_s}

    # Batch of 32 synthetic images: vmap vs lax.map vs a Python loop over the same compiled program;
    # with the VCA-FCLS start ("full") and from a fixed start (multiplicative updates only).
    B, iters = 32, (50 if args.quick else 100)
    if source == "Jasper Ridge":
        Mg = jnp.asarray(d.endmembers)
    else:
        Mg = synthetic.smooth_endmembers(jax.random.PRNGKey(0), 198, 4, jnp.float64)
    keys = jax.random.split(jax.random.PRNGKey(5), B)
    Ys = jax.vmap(lambda k: synthetic.make_scene(k, Mg, (50, 50)).Y)(keys)
    full = lambda Yb, k: U.rrlbs(Yb, R, key=k, max_iters=iters, tol=0.0, fcls_iters=100)  # noqa: E731
    starts = jax.jit(jax.vmap(lambda Yb, k: U.vca(Yb, R, key=k, fcls_iters=100)))(Ys, keys)
    M0s, A0s = jax.vmap(U.floor_start)(Ys, starts.endmembers, starts.abundances)
    mu = lambda Yb, M0, A0: U.rrlbs(Yb, R, init_endmembers=M0, init_abundances=A0, max_iters=iters, tol=0.0)  # noqa: E731
    brep = max(2, repeats // 2)
    out["batch32"] = {"image": [198, 2500], "iterations": iters}
    for label, f, bargs in (("full", full, (Ys, keys)), ("mu_only", mu, (Ys, M0s, A0s))):
        one = jax.jit(f)
        tv = time_call(jax.jit(jax.vmap(f)), bargs, repeats=brep)
        tm = time_call(jax.jit(lambda *a, f=f: jax.lax.map(lambda t: f(*t), a)), bargs, repeats=brep)
        jax.block_until_ready(one(*(a[0] for a in bargs)))
        tl = time_host(lambda: [one(*(a[i] for a in bargs)) for i in range(B)], repeats=brep)
        out["batch32"][label] = {"vmap": tv.as_dict(), "lax_map": tm.as_dict(), "loop": tl.as_dict(),
                                 "loop_over_vmap": tl.median_s / tv.median_s,
                                 "loop_over_vmap_cpu": tl.cpu_median_s / tv.cpu_median_s}
    out["batched_matmul_micro"] = batched_matmul_micro(repeats=repeats)

    b, conv_its = out["batch32"], out["to_convergence"]
    rows = [
        ("per iteration, Jasper (ms)", out["per_iteration_ms"]["jax"], out["per_iteration_ms"]["numpy"],
         out["per_iteration_ms"]["numpy_over_jax"]),
        ("per iteration, Jasper (CPU ms)", out["per_iteration_ms"]["jax_cpu"], out["per_iteration_ms"]["numpy_cpu"],
         out["per_iteration_ms"]["numpy_over_jax_cpu"]),
        (f"to convergence (s; {conv_its['jax_iterations']} / {conv_its['numpy_iterations']} it)",
         tc.median_s, tnc.median_s, tnc.median_s / tc.median_s),
    ]
    for label in ("full", "mu_only"):
        rows.append((f"batch of 32, {label} (s): vmap | loop", b[label]["vmap"]["median_s"],
                     b[label]["loop"]["median_s"], b[label]["loop_over_vmap"]))
        rows.append((f"batch of 32, {label} (s): lax.map | loop", b[label]["lax_map"]["median_s"],
                     b[label]["loop"]["median_s"], b[label]["loop"]["median_s"] / b[label]["lax_map"]["median_s"]))
    for name, v in out["batched_matmul_micro"].items():
        rows.append((f"32 x {name} (ms): vmap | loop", v["vmap_ms"], v["loop_ms"], v["loop_ms"] / v["vmap_ms"]))
        rows.append((f"32 x {name} (ms): lax.map | loop", v["lax_map_ms"], v["loop_ms"],
                     v["loop_ms"] / v["lax_map_ms"]))
    print(f"RRLbS benchmark on {source} {tuple(Y.shape)}, float64, {jax.default_backend()} "
          f"(compile {out['jax_compile_s']:.1f} s excluded)")
    print(f"{'measure':52s} {'JAX':>10s} {'NumPy/loop':>12s} {'ratio':>7s}")
    for name, a, b_, c in rows:
        print(f"{name:52s} {a:10.3f} {b_:12.3f} {c:7.2f}")
    print(f"max relative objective difference JAX vs NumPy over {n_iter} iterations: "
          f"{out['max_rel_objective_diff']:.2e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out["load_average_at_end"] = os.getloadavg()
    print(f"load average at start / end: {out['load_average_at_start'][0]:.1f} / {out['load_average_at_end'][0]:.1f}")
    records.write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
