"""KroSBL reproduction (He & Joseph, TSP 2024): Figs. 2-5 and run time vs K on synthetic data.

    python -m experiments krosbl [--quick|--full] [--out results]
    python -m experiments.krosbl.run --full --out results/krosbl [--csbl-trials 12]

quick (CI budget): paper sizes with 10 trials for Fig. 3(a) and the default point of Fig. 5
(M_1 = 8); Fig. 2 on a reduced problem (N_i = 10, M = (9, 8, 10)); run time for K in {2, 4, 6}.
full: the paper's sizes and 200 trials for every sweep (Figs. 3(a)-(c), 5), Figs. 2 and 4 at
M = (14, 12, 15). cSBL (seconds per EM iteration at M = 1440 on 2 shared CPU cores, even with the structured E-step)
runs only at the default point (`--csbl-trials`, default 12; ~2 min per trial there under load); Figs. 2
and 4 omit it at full size (500 iterations at M = 2520). Sweeps and convergence curves checkpoint and resume;
`--stages fig3b,fig3c` runs a subset.
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
import time
from pathlib import Path

import jax

from experiments.krosbl import report
from experiments.krosbl import trials as T
from jsparse.core import montecarlo, records
from jsparse.core.code_fingerprint import code_fingerprint

SNRS = [5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
M1S = [6, 8, 10, 12, 14]
KS = [2, 3, 4, 5, 6]
# Paper reference numbers (notes §7.2, from the reference repository's plot labels / result files).
REF_FIG2 = {"none": {"am": 4.7e-5, "svd": 4.4e-5, "ksbl": 1.2e-3, "csbl": 5.5e-4},
            "prune": {"svd": 3.5e-5, "csbl": 5.2e-4}}
REF_FIG4 = {"known": {"am": 3.7e-5, "svd": 3.9e-5, "ksbl": 3.6e-4, "csbl": 5.4e-4},
            "unknown": {"am": 3.8e-5, "svd": 3.9e-5, "ksbl": 3.7e-4, "csbl": 1.6e-3}}
# Unknown σ², K = 3, 25 dB (100 trials each): mean NMSE, median NMSE, SRR, MATLAB seconds.
REF_TIME = {8: {"csbl": (9.3e-3, 2.7e-3, 0.65, 14.9), "am": (2.1e-2, 2.7e-3, 0.69, 8.4),
                "svd": (3.4e-4, 1.7e-4, 0.90, 2.0), "ksbl": (2.3e-1, 6.3e-3, 0.53, 12.6)},
            10: {"csbl": (1.2e-2, 1.3e-3, 0.71, 17.2), "am": (1.7e-2, 4.0e-4, 0.75, 7.9),
                 "svd": (1.2e-2, 1.2e-4, 0.88, 1.7), "ksbl": (1.8e-2, 4.6e-4, 0.74, 13.0)}}


STAGES = ("fig5", "fig3a", "fig2", "default_csbl", "fig3b", "fig3c", "fig4", "time_vs_k")


def _sweep(out_dir, name, grid, num_trials, resume, *, chunk, batch=None, key=1):
    """A checkpointed sweep; its compute wall time survives resumes (checkpoints/<name>/timing.json)."""
    fn = lambda key, **kw: T.trial(key, **kw)  # noqa: E731
    folder = out_dir / "checkpoints"
    t0 = time.perf_counter()
    res = montecarlo.sweep(fn, grid, num_trials=num_trials, key=key, chunk_size=chunk, batch_size=batch,
                           out_dir=folder if resume else None, name=name, on_mismatch="recompute")
    wall = time.perf_counter() - t0
    timing_path = folder / name / "timing.json"
    if resume:
        reused = timing_path.exists() and res.meta.get("chunks_loaded", 0) > 0  # not after a recompute
        prev = records.read_json(timing_path) if reused else {"wall_s": 0.0}
        if res.meta.get("chunks_computed", 0) > 0:
            prev = {"wall_s": prev["wall_s"] + wall}
            records.write_json(timing_path, prev)
        wall = prev["wall_s"]
    return res, wall


def _method_sweeps(out_dir, tag, base_grid, methods, trials, csbl_trials, resume):
    """One sweep per method (static), so each can have its own trial count and batch size."""
    out = {}
    for meth in methods:
        n = csbl_trials if meth == "csbl" else trials
        if n <= 0:
            continue
        grid = dict(base_grid, method=[meth])
        # lax.map over vmapped batches of 25 (bounded memory); one trial at a time for cSBL (an
        # M x M Cholesky per trial) and in quick mode (smaller programs compile faster).
        chunk, batch = (max(1, min(n, 4)), 1) if meth == "csbl" else (200, 1 if trials <= 20 else 25)
        res, wall = _sweep(out_dir, f"{tag}_{meth}_{n}", grid, n, resume, chunk=chunk, batch=batch)
        swept = len(next(iter(base_grid.values())))  # the first grid entry is the swept variable
        out[meth] = {k: v.reshape(swept, n) for k, v in res.arrays.items()}  # (swept values, trials)
        out[meth]["_meta"] = {"wall_s": wall, "run_s": res.meta.get("run_seconds"),
                              "compile_s": res.meta.get("compile_seconds"), "trials": n}
    return out


def _convergence(out_dir, name, resume, **kw):
    """`trials.convergence`, cached in checkpoints/conv/<name>.npz (keyed by its settings and code)."""
    path = out_dir / "checkpoints" / "conv" / f"{name}.npz"
    settings = repr((sorted(kw.items()), code_fingerprint(T.convergence)))
    if resume and path.exists():
        saved = records.load_arrays(path)
        if str(saved["settings"]) == settings:
            return {"trace": saved["trace"], "seconds": float(saved["seconds"])}
    t0 = time.perf_counter()
    trace = T.convergence(jax.random.PRNGKey(2024), **kw)
    seconds = time.perf_counter() - t0
    if resume:
        path.parent.mkdir(parents=True, exist_ok=True)
        records.save_arrays(path, {"trace": trace, "seconds": seconds, "settings": settings})
    return {"trace": trace, "seconds": seconds}


def run(out_dir: Path, *, quick: bool = True, resume: bool = True, csbl_trials: int | None = None,
        stages: str | None = None, **_options) -> str:
    """Run the selected stages (default: all of STAGES; quick mode skips fig3b, fig3c, fig4).

    Every sweep and convergence curve is checkpointed under out_dir/checkpoints, so a re-run (or a
    run with more stages) loads finished work instead of recomputing it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    selected = set(STAGES if stages is None else stages.split(","))
    unknown = selected - set(STAGES)
    if unknown:
        raise ValueError(f"stages: unknown {sorted(unknown)}; choose from {STAGES}")
    if quick:
        selected -= {"fig3b", "fig3c", "fig4"}
    trials = 10 if quick else 200
    csbl_trials = (0 if quick else 12) if csbl_trials is None else csbl_trials
    results: dict = {"settings": {"quick": quick, "trials": trials, "csbl_trials": csbl_trials, "dtype": "float64",
                                  "seed": 1, "n": T.N_PAPER, "m1_max": T.M1_MAX, "stages": sorted(selected)}}
    t_start = time.perf_counter()
    kron = ["svd", "am", "ksbl"]
    m1s = [8] if quick else M1S
    ks = [2, 4, 6] if quick else KS

    def save():  # partial results after every stage, so an interrupted full run still reports
        results["total_seconds"] = time.perf_counter() - t_start
        results["environment"] = records.environment()
        return report.write(out_dir, results, REF_FIG2, REF_FIG4, REF_TIME, SNRS, m1s, ks)

    if quick:
        conv = dict(n=(10, 10, 10), m=(9, 8, 10))
        iters2 = {"svd": 200, "am": 300, "ksbl": 300, "csbl": 200}
        iters4: dict[str, int] | None = None  # fig4 runs only in full mode
        inner_tol = 1e-6
    else:
        conv = dict(n=T.N_PAPER, m=(14, 12, 15))
        iters2 = {"svd": 500, "am": 2000, "ksbl": 2000}
        iters4, inner_tol = {"svd": 200, "am": 4000, "ksbl": 1000}, 1e-10
    results["convergence_problem"] = {k: list(v) for k, v in conv.items()}
    results["convergence_iters"] = {"fig2": iters2, "fig4": iters4, "am_inner_tol": inner_tol}

    def curve(name, **kw):
        c = _convergence(out_dir, name, resume, **kw, **conv)
        results.setdefault("convergence_seconds", {})[name] = c["seconds"]
        return c["trace"]

    with jax.enable_x64(True):
        if "fig5" in selected:  # holds the default point: learned σ², halved pruning (library defaults)
            fig5_grid = {"m": [(m1, 12, 15) for m1 in m1s], "known_noise": [False]}
            results["fig5"] = _method_sweeps(out_dir, "fig5", fig5_grid, kron, trials, 0, resume)
            save()
        if "fig3a" in selected:  # known σ², K = 3, M_1 = 8
            results["fig3a"] = _method_sweeps(out_dir, "fig3a", {"snr_db": SNRS}, kron + ["komp"], trials, 0,
                                              resume)
            save()
        if "fig2" in selected:  # one realisation, M_1 = 14, K = 4, 30 dB, known σ² (cSBL capped in --full)
            fig2 = {"none": {}, "prune": {}}
            # cSBL at M = 2520 would cost ~20-25 s per EM iteration on the shared 2-core machine (paper: 500
            # iterations), so --full leaves it out; quick mode runs it on the reduced problem.
            with_csbl = ["csbl"] if quick else []
            fig2_problem = dict(k=4, snr_db=30.0, values="kron", known_noise=True)
            for meth in ["svd", "am", "ksbl"] + with_csbl:
                fig2["none"][meth] = curve(f"fig2_none_{meth}", method=meth, **fig2_problem,
                                           iters=iters2[meth], prune=0.0, inner_tol=inner_tol)
            for meth in ["svd"] + with_csbl:
                fig2["prune"][meth] = curve(f"fig2_prune_{meth}", method=meth, **fig2_problem,
                                            iters=min(150, iters2[meth]), prune=5e-4 if meth == "csbl" else 1e-3)
            results["fig2"] = fig2
            save()
        if "default_csbl" in selected:  # cSBL costs ~1 s per EM iteration here: csbl_trials trials
            results["default_csbl"] = _method_sweeps(out_dir, "default", {"m": [(8, 12, 15)], "known_noise": [False]},
                                                     ["csbl"], 0, csbl_trials, resume)
            save()
        if "fig3b" in selected:
            fig3b_grid = {"m": [(m1, 12, 15) for m1 in M1S]}
            results["fig3b"] = _method_sweeps(out_dir, "fig3b", fig3b_grid, kron + ["komp"], trials, 0, resume)
            save()
        if "fig3c" in selected:
            results["fig3c"] = _method_sweeps(out_dir, "fig3c", {"k": KS}, kron + ["komp"], trials, 0, resume)
            save()
        if "fig4" in selected:
            assert iters4 is not None  # quick mode removed fig4 from the selected stages above
            fig4 = {"known": {}, "unknown": {}}
            for setting in fig4:
                for meth in ["svd", "am", "ksbl"]:  # cSBL omitted at full size (500 dense iterations)
                    fig4[setting][meth] = curve(f"fig4_{setting}_{meth}", method=meth, k=4, snr_db=30.0, values="iid",
                                                known_noise=setting == "known", iters=iters4[meth], prune=0.0,
                                                inner_tol=inner_tol)
            results["fig4"] = fig4
            save()
        if "time_vs_k" in selected:
            code = code_fingerprint(report.time_vs_k)  # timings of other code are not reused
            time_cache = (out_dir / "checkpoints" / f"time_vs_k_{code}.json") if resume else None
            results["time_vs_k"] = report.time_vs_k(ks, trials=10 if quick else 50,
                                                    methods=["svd"] if quick else kron, cache=time_cache)
    return save()


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m experiments.krosbl.run", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--full", action="store_true", help="paper sizes, 200 trials (default: quick)")
    ap.add_argument("--out", default="results/krosbl", help="output folder")
    ap.add_argument("--no-resume", action="store_true", help="ignore saved checkpoints and start over")
    ap.add_argument("--csbl-trials", type=int, default=None,
                    help="cSBL trials at the default point (default: 0 quick, 12 full)")
    ap.add_argument("--stages", default=None,
                    help=f"comma-separated subset of {','.join(STAGES)} (default: all; quick skips fig3b, fig3c, fig4)")
    return ap


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    print(run(Path(a.out), quick=not a.full, resume=not a.no_resume, csbl_trials=a.csbl_trials, stages=a.stages))


if __name__ == "__main__":
    main()
