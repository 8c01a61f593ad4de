"""Benchmark: RRLbS in JAX vs a NumPy implementation of the same updates (same run, ratio).

    python -m experiments.bench_unmixing [--quick] [--out results/bench_unmixing.json] [--data-root DIR]

* Per iteration on Jasper Ridge (198 bands x 10000 pixels, R = 4; a synthetic scene of the same
  size when the file is absent), float64, from the same VCA-FCLS start: the median over repeats of
  (time of n iterations) / n, compilation excluded (reported separately).
* To convergence: both run with the same stopping rule (relative objective change < tol).
* A vmapped batch of 32 synthetic 50 x 50 images vs a Python loop over the same compiled program.
"""
from __future__ import annotations

from experiments import _env  # noqa: F401

import argparse
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

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


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), times


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations and repeats")
    ap.add_argument("--out", type=Path, default=Path("results/bench_unmixing.json"))
    ap.add_argument("--data-root", type=Path, default=None)
    args = ap.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    from experiments.unmixing.run import default_data_root

    n_iter, repeats, conv_cap = (20, 3, 300) if args.quick else (50, 5, 2000)
    try:
        d = datasets.load_dataset("jasper", root=args.data_root or default_data_root())
        Y, source = jnp.asarray(d.Y), "Jasper Ridge"
    except FileNotFoundError:
        M = synthetic.smooth_endmembers(jax.random.PRNGKey(0), 198, 4, jnp.float64)
        Y, source = synthetic.make_scene(jax.random.PRNGKey(1), M, (100, 100)).Y, "synthetic 198 x 10000"
    R = 4
    idx = U.vca_indices(Y, R, jax.random.PRNGKey(0))
    M0 = jnp.maximum(Y[:, idx], 1e-6 * jnp.max(Y))
    A0 = U.fcls(Y, M0, max_iters=200).abundances
    A0 = (A0 + 1e-2) / (1 + R * 1e-2)
    lam = float(U.sparsity_lambda(Y))
    gamma = lam / 8.0
    Yn, M0n, A0n = (np.asarray(x) for x in (Y, M0, A0))

    def jax_run(iters, tol):
        return U.rrlbs(Y, R, init_endmembers=M0, init_abundances=A0, max_iters=iters, tol=tol, lam=lam, gamma=gamma)

    out = {"source": source, "shape": list(Y.shape), "R": R, "dtype": "float64", "environment": records.environment(),
           "load_average_at_start": os.getloadavg()}  # other processes on the machine skew absolute times
    t0 = time.perf_counter()
    jax.block_until_ready(jax_run(n_iter, 0.0))
    out["jax_first_call_s"] = time.perf_counter() - t0  # compile + one run
    t_jax, _ = _median_time(lambda: jax.block_until_ready(jax_run(n_iter, 0.0)), repeats)
    out["jax_compile_s"] = out["jax_first_call_s"] - t_jax
    t_np, _ = _median_time(lambda: numpy_rrlbs(Yn, M0n, A0n, lam=lam, gamma=gamma, max_iters=n_iter), repeats)
    out["per_iteration_ms"] = {"jax": 1e3 * t_jax / n_iter, "numpy": 1e3 * t_np / n_iter, "numpy_over_jax": t_np / t_jax}
    # Same updates? (checks the NumPy code is the same algorithm)
    r = jax_run(n_iter, 0.0)
    Mn, An, _, objs = numpy_rrlbs(Yn, M0n, A0n, lam=lam, gamma=gamma, max_iters=n_iter)
    out["max_rel_objective_diff"] = float(np.max(np.abs(np.asarray(r.objective) - objs) / np.abs(objs)))

    # To convergence (same rule: relative objective change < 1e-6, capped).
    jax.block_until_ready(jax_run(conv_cap, 1e-6))
    t0 = time.perf_counter()
    rc = jax.block_until_ready(jax_run(conv_cap, 1e-6))
    tj = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, _, _, objs = numpy_rrlbs(Yn, M0n, A0n, lam=lam, gamma=gamma, max_iters=conv_cap, tol=1e-6)
    tn = time.perf_counter() - t0
    out["to_convergence"] = {"tol": 1e-6, "cap": conv_cap, "jax_iterations": int(rc.iterations), "jax_s": tj,
                             "numpy_iterations": len(objs), "numpy_s": tn, "numpy_over_jax": tn / tj}

    # Vmapped batch of 32 synthetic images vs a loop over the same compiled single-image program.
    B, iters = 32, (50 if args.quick else 100)
    Mg = jnp.asarray(d.endmembers) if source == "Jasper Ridge" else synthetic.smooth_endmembers(jax.random.PRNGKey(0), 198, 4, jnp.float64)
    keys = jax.random.split(jax.random.PRNGKey(5), B)
    Ys = jax.vmap(lambda k: synthetic.make_scene(k, Mg, (50, 50)).Y)(keys)
    one = jax.jit(lambda Yb, k: U.rrlbs(Yb, R, key=k, max_iters=iters, tol=0.0, fcls_iters=100))
    many = jax.jit(jax.vmap(lambda Yb, k: U.rrlbs(Yb, R, key=k, max_iters=iters, tol=0.0, fcls_iters=100)))
    jax.block_until_ready(one(Ys[0], keys[0]))
    jax.block_until_ready(many(Ys, keys))
    t_b, _ = _median_time(lambda: jax.block_until_ready(many(Ys, keys)), max(2, repeats // 2))
    t_l, _ = _median_time(lambda: [jax.block_until_ready(one(Ys[i], keys[i])) for i in range(B)], max(2, repeats // 2))
    out["batch32"] = {"image": [198, 2500], "iterations": iters, "vmapped_s": t_b, "loop_s": t_l, "loop_over_vmap": t_l / t_b}

    rows = [
        ("per iteration, Jasper (ms)", out["per_iteration_ms"]["jax"], out["per_iteration_ms"]["numpy"], out["per_iteration_ms"]["numpy_over_jax"]),
        (f"to convergence (s; {out['to_convergence']['jax_iterations']} / {out['to_convergence']['numpy_iterations']} it)",
         tj, tn, tn / tj),
        ("batch of 32 (s): vmap | loop", t_b, t_l, t_l / t_b),
    ]
    print(f"RRLbS benchmark on {source} {tuple(Y.shape)}, float64, {jax.default_backend()} "
          f"(compile {out['jax_compile_s']:.1f} s excluded)")
    print(f"{'measure':48s} {'JAX':>10s} {'NumPy/loop':>12s} {'ratio':>7s}")
    for name, a, b, c in rows:
        print(f"{name:48s} {a:10.3f} {b:12.3f} {c:7.2f}")
    print(f"max relative objective difference JAX vs NumPy over {n_iter} iterations: {out['max_rel_objective_diff']:.2e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out["load_average_at_end"] = os.getloadavg()
    print(f"load average at start / end: {out['load_average_at_start'][0]:.1f} / {out['load_average_at_end'][0]:.1f}")
    records.write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
