"""Benchmark of the SBL family at the paper's default size (run: python -m experiments.bench_sbl [--quick]).

Problem: N_i = 15 (N = 3375), M = (8, 12, 15) (M = 1440), K = 3, 25 dB, unknown σ², float64.
Compile excluded (AOT, reported separately), every result block_until_ready'd, medians over repeats,
wall and process-CPU time (on a shared machine the wall clock also counts waiting for a core).
JAX and NumPy each get one thread (XLA flags below, OPENBLAS_NUM_THREADS=1). Parts (--parts):
  * kron: SVD- and AM-KroSBL in jsparse vs the plain matrix-free NumPy port
    (experiments/numpy_krosbl.py) on the same 1, 200 and 2,000 trials, interleaved per trial count
    (jsparse: one jit of lax.map over vmapped chunks of --chunk trials; NumPy: a loop over the trials), with the
    agreement of x, σ² and the iteration counts, the analytic flop count of each trial's iterations,
    and the fraction of a float64 matmul rate measured in the same run; KSBL (jsparse only);
  * csbl: classic SBL in JAX (Cholesky, M-side) vs the NumPy port of the reference code (pinv and the
    full N x N Σ, as classicSBL.m does), a fixed 5 EM iterations each (--csbl-iters);
  * scale: one SVD-KroSBL trial at N_i in {10, 15, 20, 32} (M = (N_i/2, 3N_i/4, N_i)), jsparse and the
    NumPy port, and the peak memory (ru_maxrss of a fresh subprocess) — the dense formulation would
    need N² x 8 B = 8.6 GB for Σ alone at N_i = 32;
  * profile: where a vmapped batch of 200 SVD-KroSBL trials spends its time (each sub-step jitted and
    timed alone, the iterations the vmapped loop executes), and prototypes of changes to the library
    (slots refilled as trials converge, least-expanding-first mode products, LAPACK's batched eigh in
    fresh processes under a timeout), each checked against the unchanged solver's x.
--quick: 1, 20 and 100 trials, SVD and AM only, no cSBL, sizes 10 and 15, a profile of 100 trials.
Writes results/bench_sbl.json (or --out) and prints Markdown tables.
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
# The NumPy side gets one BLAS thread too, so both sides are compared on one core each (and the
# matmul rate they are measured against is one core's).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from experiments._timing import time_call, time_host  # noqa: E402
from experiments.numpy_krosbl import flops_per_trial, krosbl_np  # noqa: E402
from jsparse.core import records  # noqa: E402
from jsparse.core.kron import kron_dense, kron_matvec, kron_rmatvec, mode_product  # noqa: E402
from jsparse.sbl import KroSBL, _estep, _mstep, krosbl, sbl  # noqa: E402
from jsparse.sbl import _common as C  # noqa: E402
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


def _np_trials(p, meth, idx):
    """The NumPy port on trials `idx` (a loop, as a NumPy user would run it)."""
    return [krosbl_np(np.asarray(p.y[i]), [np.asarray(f[i]) for f in p.factors], meth) for i in idx]


def _agreement(xs_np, res, counts_np):
    """Largest relative differences of x (to max |x|) and σ², and the trials whose iteration counts differ."""
    xj, sj, itj = np.asarray(res.x), np.asarray(res.noise_var), np.asarray(res.iterations)
    dx = max(float(np.max(np.abs(o[0] - xj[i])) / max(np.max(np.abs(xj[i])), 1e-300)) for i, o in enumerate(xs_np))
    ds = max(abs(o[2] - float(sj[i])) / o[2] for i, o in enumerate(xs_np))
    return {"max_rel_diff_x": dx, "max_rel_diff_noise_var": ds,
            "iteration_mismatches": int(sum(o[3] != int(itj[i]) for i, o in enumerate(xs_np))),
            "mean_iterations": float(np.mean([c["iterations"] for c in counts_np])),
            "mean_inner_sweeps": float(np.mean([c["inner_sweeps"] for c in counts_np]))}


def _jsparse_batch(meth, batch, chunk=25):
    """jit(lax.map over vmapped chunks of `chunk`): one program for `batch` trials (one trial: plain
    jit). chunk = 1 runs the trials one after another inside the program, each to its own
    convergence; a vmapped chunk steps every trial until its slowest one has converged."""
    if batch == 1:
        return jax.jit(lambda y, f: krosbl(y[0], tuple(a[0] for a in f), method=meth))
    return jax.jit(lambda Y, F: jax.lax.map(lambda a: krosbl(a[0], a[1], method=meth), (Y, F),
                                            batch_size=min(chunk, batch)))


def _other_chunks(meth, Y, F, batch, chunk):
    """Per-trial wall / CPU time of the same trials with vmapped chunks of 25 and one vmap of all."""
    out = {}
    for other in sorted({25, batch} - {chunk}):
        t = time_call(_jsparse_batch(meth, batch, other), (Y, F), repeats=3)
        out[str(other)] = {"s_per_trial": t.median_s / batch, "cpu_s_per_trial": t.cpu_median_s / batch}
    return out


def bench_one(p, meth, batch, rate, chunk=1):
    """jsparse (compiled once, then timed; lax.map over vmapped chunks of `chunk`) and the NumPy loop
    on the first `batch` trials, interleaved; at 200 trials also the other chunkings."""
    Y, F = p.y[:batch], tuple(f[:batch] for f in p.factors)
    fn = _jsparse_batch(meth, batch, chunk)
    tj = time_call(fn, (Y, F), repeats=5 if batch == 1 else (3 if batch <= 200 else 1))
    res = jax.tree.map(lambda v: np.asarray(v)[None], fn(Y, F)) if batch == 1 else fn(Y, F)
    row = {"jsparse_s_per_trial": tj.median_s / batch, "jsparse_cpu_s_per_trial": tj.cpu_median_s / batch,
           "jsparse_compile_s": tj.compile_s, "chunk": min(chunk, batch)}
    if batch == 200:
        row["other_chunks"] = _other_chunks(meth, Y, F, batch, chunk)
    if meth not in ("svd", "am"):
        return row
    w0, c0 = time.perf_counter(), time.process_time()
    out = _np_trials(p, meth, range(batch))
    if batch == 1:  # medians over 5 runs of the one trial, like jsparse's
        tn = time_host(lambda: _np_trials(p, meth, [0]), repeats=5)
        wall, cpu = tn.median_s, tn.cpu_median_s
    else:
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    counts = [o[5] for o in out]
    flops = float(np.mean([flops_per_trial(PAPER_N, PAPER_M, meth, c) for c in counts]))
    row.update(numpy_s_per_trial=wall / batch, numpy_cpu_s_per_trial=cpu / batch,
               ratio_jsparse_over_numpy=row["jsparse_s_per_trial"] / (wall / batch),
               flops_per_trial=flops, jsparse_gflops=flops / row["jsparse_s_per_trial"] / 1e9,
               numpy_gflops=flops / (wall / batch) / 1e9, **_agreement(out, res, counts))
    row["jsparse_fraction_of_matmul"] = row["jsparse_gflops"] / rate["jax_gflops"]
    row["numpy_fraction_of_matmul"] = row["numpy_gflops"] / rate["numpy_gflops"]
    return row


def matmul_rate(n=1024, repeats=5):
    """float64 GFLOP/s of an n x n matmul: NumPy (OpenBLAS, its default threads) and JAX (XLA, as configured)."""
    a = np.random.default_rng(0).standard_normal((n, n))
    tn = time_host(lambda: a @ a, repeats=repeats)
    aj = jnp.asarray(a)
    tj = time_call(jax.jit(lambda x: jnp.matmul(x, x, precision="highest")), (aj,), repeats=repeats)
    return {"n": n, "numpy_gflops": 2 * n**3 / tn.median_s / 1e9, "jax_gflops": 2 * n**3 / tj.median_s / 1e9}


def bench_kron(batches, methods, chunk=1):
    rate = matmul_rate()
    p = problems(PAPER_N, PAPER_M, max(batches))
    rows = {meth: {str(b): bench_one(p, meth, b, rate, chunk) for b in batches} for meth in methods}
    return {"matmul": rate, "methods": rows}


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
import resource, json, sys, time
from experiments import _env
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from jsparse.sbl import krosbl
from jsparse.sbl.synthetic import kron_problem
from jsparse.core.metrics import nmse
from experiments._timing import time_call, time_host
from experiments.numpy_krosbl import krosbl_np
n, m = tuple(json.loads(sys.argv[1])), tuple(json.loads(sys.argv[2]))
p = kron_problem(jax.random.PRNGKey(0), n, m, 3, 25.0, dtype=jnp.float64)
f = jax.jit(lambda y, fs: krosbl(y, fs).x)
t = time_call(f, (p.y, p.factors), repeats=3)
x = f(p.y, p.factors).block_until_ready()
peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
yn, fn = np.asarray(p.y), [np.asarray(a) for a in p.factors]
tn = time_host(lambda: krosbl_np(yn, fn, "svd"), repeats=3)
xn = krosbl_np(yn, fn, "svd")[0]
print(json.dumps({"n": n, "m": m, "N": int(x.shape[0]), "run_s": t.median_s, "cpu_s": t.cpu_median_s,
                  "compile_s": t.compile_s, "nmse": float(nmse(x, p.x)), "peak_rss_mb": peak_rss_mb,
                  "numpy_s": tn.median_s, "numpy_cpu_s": tn.cpu_median_s,
                  "rel_diff_x": float(np.max(np.abs(xn - np.asarray(x))) / np.max(np.abs(np.asarray(x))))}))
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


# ----------------------------------------------------------------------------- where the time goes
def _mid_run(p, solver, steps=5):
    """Batched state after `steps` EM iterations, its pruned γ, and the E-step pieces at that state."""
    st = jax.vmap(solver.init)(p.y, p.factors)
    stepv = jax.jit(jax.vmap(solver.step))
    for _ in range(steps):
        st = stepv(st, p.y, p.factors)
    g = jax.vmap(lambda g: C.prune(g, solver.relative_prune(3), 0.0))(st.gammas)
    e = jax.vmap(_factor_eigs)(p.factors, g)
    den = st.noise_var[:, None] + jax.vmap(C.full_gamma)(tuple(a[0] for a in e))
    post = jax.vmap(_estep.posterior_eig_m)(p.y, p.factors, g, st.noise_var)
    return st, g, e, den, post.diag_sigma + post.mu**2


def _factor_eigs(factors, gammas):
    out = []
    for h, g in zip(factors, gammas):
        hg = h * g[None, :]
        a = jnp.matmul(hg, h.T, precision="highest")
        w, u = _estep.safe_eigh(0.5 * (a + a.T))
        out.append((w, u, jnp.matmul(hg.T, u, precision="highest")))
    return out


def _mode_products(y, us, phis, den):
    w = kron_rmatvec(us, y) / den
    return kron_matvec(phis, w), kron_matvec([f**2 for f in phis], 1.0 / den)


def profile_steps(p, solver):
    """ms per EM iteration of the whole vmapped batch, per sub-step (each jitted alone, vmapped)."""
    st, g, e, den, d = _mid_run(p, solver)
    y, f, s2 = p.y, p.factors, st.noise_var
    grams = tuple(jax.vmap(lambda h, gg: (h * gg) @ h.T)(h, gg) for h, gg in zip(f, g))
    parts = {
        "E-step: Grams H_i Γ_i H_iᵀ, eigh, Φ_i": (_factor_eigs, (f, g)),
        "  of which eigh alone (3 per trial)": (lambda *a: [_estep.safe_eigh(0.5 * (x + x.T)) for x in a], grams),
        "E-step: mode products (⊗U_i)ᵀy, two ⊗Φ_i products": (_mode_products, (y, tuple(a[1] for a in e),
                                                                               tuple(a[2] for a in e), den)),
        "E-step whole": (_estep.posterior_eig_m, (y, f, g, s2)),
        "M-step (SVD: 2 Grams + eigh of N_i x N_i)": (lambda dd: _mstep.svd_mstep(dd, PAPER_N), (d,)),
        "step whole (prune, E, M, σ², stopping test)": (solver.step, (st, y, f)),
    }
    out = {}
    for k, (fn, args) in parts.items():
        t = time_call(jax.jit(jax.vmap(fn)), args, repeats=7)
        out[k] = {"wall_ms": 1e3 * t.median_s, "cpu_ms": 1e3 * t.cpu_median_s}
    return out


def _native_eigh(a):
    return tuple(jnp.linalg.eigh(a))


def _ordered_matvec(mats, x):
    """(⊗A_i) x applying the least-expanding modes first (fewer flops when every mode expands)."""
    t = x.reshape([a.shape[1] for a in mats])
    for i in sorted(range(len(mats)), key=lambda i: mats[i].shape[0] / mats[i].shape[1]):
        t = mode_product(t, mats[i], i)
    return t.reshape(-1)


def refill_solve(solver, y, factors, slots):
    """Prototype: `slots` trials stepped together; a converged slot takes the next trial at once.

    A vmapped while loop steps every trial until the slowest one converges; here no slot idles
    until the queue is empty. Same iterates per trial, hence the same results.
    """
    n = y.shape[0]
    init, step = jax.vmap(solver.init), jax.vmap(solver.step)

    def take(idx):
        idx = jnp.minimum(idx, n - 1)
        return y[idx], tuple(f[idx] for f in factors)

    idx0 = jnp.arange(slots)
    st0 = init(*take(idx0))
    out0 = jax.tree.map(lambda a: jnp.zeros((n,) + a.shape[1:], a.dtype), st0)

    def body(carry):
        st, idx, nxt, out, done_n = carry
        new = step(st, *take(idx))
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g), axis=1) for g in new.gammas]), axis=0)
        done = (new.converged | (new.iteration >= solver.max_iters) | ~finite) & (idx < n)
        dest = jnp.where(done, idx, n)
        out = jax.tree.map(lambda o, a: o.at[dest].set(a, mode="drop"), out, new)
        nidx = jnp.where(done, nxt + jnp.cumsum(done) - 1, idx)
        nidx = jnp.where(done & (nidx >= n), n, nidx)
        fresh = init(*take(nidx))
        pick = lambda a, b: jnp.where(done.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)  # noqa: E731
        st = jax.tree.map(pick, fresh, new)
        return st, nidx, nxt + jnp.sum(done), out, done_n + jnp.sum(done)

    carry = (st0, idx0, jnp.asarray(slots), out0, jnp.asarray(0))
    final = jax.lax.while_loop(lambda c: c[4] < n, body, carry)[3]
    return jax.lax.map(lambda a: solver.result(a[0], a[1], a[2]), (final, y, factors), batch_size=slots)


def native_eigh_check(ref_path, batch):
    """Prototype (run in a subprocess under a timeout): LAPACK's own batched eigh instead of jsparse's
    one-matrix-at-a-time loop on CPU, timed against the unchanged solver, x compared with the reference."""
    p = problems(PAPER_N, PAPER_M, batch)
    args, ref = (p.y, p.factors), np.load(ref_path)
    base_fn = _jsparse_batch("svd", batch)
    base = time_call(base_fn, args, repeats=2)
    base_diff = float(np.max(np.abs(np.asarray(base_fn(*args).x) - ref)))
    _estep.safe_eigh = _mstep.safe_eigh = _native_eigh
    jax.clear_caches()  # krosbl's own jit would otherwise reuse the trace made with the old eigh
    fn = _jsparse_batch("svd", batch)
    t = time_call(fn, args, repeats=2)
    x = np.asarray(fn(*args).x)
    return {"base_s": base.median_s, "base_cpu_s": base.cpu_median_s, "native_s": t.median_s,
            "native_cpu_s": t.cpu_median_s, "compile_s": t.compile_s,
            "max_abs_diff_x": float(np.max(np.abs(x - ref))), "base_max_abs_diff_x": base_diff}


def _run_native(ref_path, batch, tries):
    """`tries` fresh processes (the batched-eigh hang shows up per process); a timeout counts as a hang."""
    out = []
    cmd = [sys.executable, "-m", "experiments.bench_sbl", "--native-eigh-check", ref_path, "--batch", str(batch)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    for _ in range(tries):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
            out.append(json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0
                       else {"error": r.stderr[-300:]})
        except subprocess.TimeoutExpired:
            out.append({"error": "timeout (240 s): hang"})
    return out


def _timed_x(fn, args, repeats, ref_x=None):
    """(timing dict, x): wall and CPU medians, compile time, and the largest |x - ref_x| when given."""
    t = time_call(fn, args, repeats=repeats)
    x = np.asarray(fn(*args).x)
    row = {"s": t.median_s, "cpu_s": t.cpu_median_s, "compile_s": t.compile_s}
    if ref_x is not None:
        row["max_abs_diff_x"] = float(np.max(np.abs(x - ref_x)))
    return row, x


def _prototypes(p, solver, ref_x, repeats, slots=(25, 50)):
    """Refilled slots and least-expanding-first mode products, each timed and checked against ref_x."""
    args, out = (p.y, p.factors), {}
    for s in slots:
        out[f"refill_{s}_slots"] = _timed_x(jax.jit(lambda y, f, s=s: refill_solve(solver, y, f, s)), args,
                                            repeats, ref_x)[0]
    saved = _estep.kron_matvec
    try:
        _estep.kron_matvec = _ordered_matvec
        jax.clear_caches()  # krosbl's own jit would otherwise reuse the trace made with the old products
        out["ordered_mode_products_chunks_25"] = _timed_x(_jsparse_batch("svd", p.y.shape[0]), args, repeats,
                                                          ref_x)[0]
        out["refill_25_and_ordered"] = _timed_x(jax.jit(lambda y, f: refill_solve(solver, y, f, 25)), args,
                                                repeats, ref_x)[0]
    finally:
        _estep.kron_matvec = saved
        jax.clear_caches()
    return out


def profile_krosbl(batch, native_tries, repeats=3, slots=(25, 50)):
    """Sub-step times of a vmapped batch of SVD-KroSBL trials, the solve itself (one vmap, and chunks of
    25), the iterations the vmapped loops execute, and the prototypes' times."""
    p, solver = problems(PAPER_N, PAPER_M, batch), KroSBL(method="svd")
    steps = profile_steps(p, solver)
    args = (p.y, p.factors)
    one = jax.jit(jax.vmap(lambda y, f: krosbl(y, f)))
    t_one, x_one = _timed_x(one, args, repeats)
    t_chunk, x_chunk = _timed_x(_jsparse_batch("svd", batch), args, repeats)
    its = np.asarray(one(*args).iterations)
    chunk_max = its.reshape(-1, 25).max(axis=1) if batch % 25 == 0 else its
    res = {"batch": batch, "steps_ms": steps, "one_vmap_s": t_one, "chunks25_s": t_chunk,
           "iterations_mean": float(its.mean()), "iterations_max": int(its.max()),
           "chunk_executed_iterations_mean": float(chunk_max.mean()),
           "max_abs_diff_chunks_vs_one_vmap": float(np.max(np.abs(x_one - x_chunk)))}
    # CPU times: on a shared machine the wall clock also counts waiting for a core.
    res["shares_of_one_vmap_solve"] = {k: v["cpu_ms"] * 1e-3 * its.max() / t_one["cpu_s"] for k, v in steps.items()}
    res["prototypes"] = _prototypes(p, solver, x_chunk, repeats, slots)
    if native_tries:
        with tempfile.TemporaryDirectory() as tmp:
            np.save(f"{tmp}/x.npy", x_chunk)
            res["prototypes"]["native_batched_eigh_chunks_25"] = _run_native(f"{tmp}/x.npy", batch, native_tries)
    return res


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


def _kron_lines(k: dict) -> list:
    rate = k["matmul"]
    lines = [f"float64 matmul {rate['n']}³: NumPy {rate['numpy_gflops']:.1f} GFLOP/s, "
             f"JAX {rate['jax_gflops']:.1f} GFLOP/s", "",
             "| method | trials | jsparse s/trial (CPU) | NumPy s/trial (CPU) | jsparse / NumPy | GFLOP/s jsparse "
             "(of matmul) | GFLOP/s NumPy (of matmul) | max rel. diff x | iterations differ | mean iterations |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for meth, rows in k["methods"].items():
        for b, r in rows.items():
            j = f"{r['jsparse_s_per_trial']:.4f} ({r['jsparse_cpu_s_per_trial']:.4f})"
            if "numpy_s_per_trial" not in r:
                lines.append(f"| {meth} | {b} | {j} | — | — | — | — | — | — | — |")
                continue
            lines.append(
                f"| {meth} | {b} | {j} | {r['numpy_s_per_trial']:.4f} ({r['numpy_cpu_s_per_trial']:.4f}) "
                f"| {r['ratio_jsparse_over_numpy']:.2f} | {r['jsparse_gflops']:.2f} "
                f"({100 * r['jsparse_fraction_of_matmul']:.1f} %) | {r['numpy_gflops']:.2f} "
                f"({100 * r['numpy_fraction_of_matmul']:.1f} %) | {r['max_rel_diff_x']:.1e} "
                f"| {r['iteration_mismatches']} | {r['mean_iterations']:.1f} |")
    for meth, rows in k["methods"].items():
        for b, r in rows.items():
            for other, o in r.get("other_chunks", {}).items():
                lines.append(f"\n{meth}, {b} trials in vmapped chunks of {other} instead of {r['chunk']}: "
                             f"{o['s_per_trial']:.4f} s/trial (CPU {o['cpu_s_per_trial']:.4f})"
                             + (f", {r['numpy_s_per_trial'] / o['s_per_trial']:.1f}x the NumPy port"
                                if "numpy_s_per_trial" in r else ""))
    return lines


def _scale_lines(scale: list) -> list:
    lines = ["| N_i | N | M | SVD-KroSBL s/trial (CPU) | NumPy port s/trial (CPU) | compile (s) | peak RSS (MB) "
             "| NMSE | rel. diff x |", "|---|---|---|---|---|---|---|---|---|"]
    for s in scale:
        if "error" in s:
            lines.append(f"| {s['n'][0]} | error: {s['error'][-120:]} |")
            continue
        lines.append(f"| {s['n'][0]} | {s['N']} | {int(np.prod(s['m']))} | {s['run_s']:.3f} ({s['cpu_s']:.3f}) "
                     f"| {s['numpy_s']:.3f} ({s['numpy_cpu_s']:.3f}) | {s['compile_s']:.1f} "
                     f"| {s['peak_rss_mb']:.0f} | {s['nmse']:.1e} | {s['rel_diff_x']:.1e} |")
    return lines


def _profile_lines(pr: dict) -> list:
    one, ch = pr["one_vmap_s"], pr["chunks25_s"]
    lines = [f"Profile, SVD-KroSBL, {pr['batch']} trials: one vmap {one['s']:.2f} s (CPU {one['cpu_s']:.2f} s), "
             f"lax.map of vmapped chunks of 25 {ch['s']:.2f} s (CPU {ch['cpu_s']:.2f} s); iterations mean "
             f"{pr['iterations_mean']:.1f}, max {pr['iterations_max']}, executed per chunk of 25 "
             f"{pr['chunk_executed_iterations_mean']:.1f}", "",
             "| sub-step (vmapped over the batch) | ms per EM iteration: wall (CPU) "
             "| share of the one-vmap solve's CPU |",
             "|---|---|---|"]
    for k, v in pr["steps_ms"].items():
        share = 100 * pr["shares_of_one_vmap_solve"][k]
        lines.append(f"| {k} | {v['wall_ms']:.2f} ({v['cpu_ms']:.2f}) | {share:.0f} % |")
    lines += ["", "| prototype | wall s (CPU s) | CPU vs chunks of 25 | max abs diff x |", "|---|---|---|---|"]
    for k, v in pr["prototypes"].items():
        for r in (v if isinstance(v, list) else [v]):
            if "error" in r:
                lines.append(f"| {k} | {r['error']} | | |")
                continue
            if "native_s" in r:
                t = (f"{r['native_s']:.2f} ({r['native_cpu_s']:.2f}); "
                     f"unchanged {r['base_s']:.2f} ({r['base_cpu_s']:.2f})")
                gain = r["base_cpu_s"] / r["native_cpu_s"]
            else:
                t, gain = f"{r['s']:.2f} ({r['cpu_s']:.2f})", ch["cpu_s"] / r["cpu_s"]
            lines.append(f"| {k} | {t} | {gain:.2f}x | {r['max_abs_diff_x']:.1e} |")
    return lines


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m experiments.bench_sbl", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--batches", default="1,200,2000", help="trial counts of the jsparse vs NumPy comparison")
    ap.add_argument("--batch", type=int, default=200, help="trials of the profile")
    ap.add_argument("--out", default="results/bench_sbl.json",
                    help="JSON file written (parts not run keep their entry from an existing file)")
    ap.add_argument("--sizes", default="10,15,20,32", help="comma-separated N_i of the scale part")
    ap.add_argument("--chunk", type=int, default=1,
                    help="trials vmapped together inside the one program of the kron part (1: one after "
                         "another, each to its own convergence; at 200 trials chunks of 25 and one vmap of "
                         "all are timed too)")
    ap.add_argument("--csbl-iters", type=int, default=5, help="fixed EM iterations of the cSBL comparison")
    ap.add_argument("--parts", default="kron,csbl,scale,profile", help="comma-separated subset of "
                    "kron,csbl,scale,profile; parts not run keep their entry from an existing --out file")
    ap.add_argument("--quick", action="store_true", help="1, 20 and 100 trials, KSBL and cSBL left out, sizes "
                    "10 and 15, a profile of 100 trials with one native-eigh process (about 2 minutes; "
                    "default: off)")
    ap.add_argument("--native-eigh-check", default=None, metavar="REF_NPY",
                    help="internal, used by the profile part: time LAPACK's batched eigh in this process on "
                         "--batch trials and compare with the x saved in REF_NPY, print JSON and exit "
                         "(default: off)")
    return ap


def _args(argv):
    ap = build_parser()
    a = ap.parse_args(argv)
    if a.quick:
        a.batches, a.sizes, a.batch, a.parts = "1,20,100", "10,15", 100, a.parts.replace("csbl", "")
    return a


def main(argv=None):
    a = _args(argv)
    if a.native_eigh_check:
        print(json.dumps(native_eigh_check(a.native_eigh_check, a.batch)))
        return
    parts = set(a.parts.split(","))
    load0 = os.getloadavg()
    res = records.read_json(a.out) if Path(a.out).exists() else {}
    if "matmul" not in res.get("kron", {}):  # entries from before the NumPy-port comparison: drop them
        res.pop("kron", None)
        res.pop("scale", None)
    if "kron" in parts:
        res["kron"] = bench_kron([int(b) for b in a.batches.split(",")], ("svd", "am") if a.quick
                                 else ("svd", "am", "ksbl"), chunk=a.chunk)
    if "csbl" in parts:
        res["csbl"] = bench_csbl(a.csbl_iters)
    if "scale" in parts:
        res["scale"] = bench_scale([int(s) for s in a.sizes.split(",")])
    if "profile" in parts:
        res["profile"] = profile_krosbl(a.batch, 1 if a.quick else 3, 1 if a.quick else 3,
                                        (25,) if a.quick else (25, 50))
    res.update(loadavg_before=load0, loadavg_after=os.getloadavg(), parts_run=sorted(parts), quick=a.quick,
               environment=records.environment())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    records.write_json(a.out, records.to_builtin(res))
    lines = _kron_lines(res["kron"]) if "kron" in res else []
    lines += ["", _csbl_line(res.get("csbl")), ""] + _scale_lines(res.get("scale", []))
    lines += [""] + (_profile_lines(res["profile"]) if "profile" in res else [])
    lines.append(f"\nload average before/after: {load0} / {res['loadavg_after']}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
