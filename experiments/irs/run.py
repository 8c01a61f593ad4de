"""IRS-MIMO channel estimation (He & Joseph, TSP 2024, IRS figure): NMSE and SER vs SNR.

Setup (jsparse.sbl.irs, the reference values): N_M = 6, N_B = 16, N_I = 256, 18-point grids,
angle spread 3, K_P = 3 pilots, K_I = 6 IRS configurations, M = 288, N = 5832, known σ².
Methods: SVD-KroSBL, AM-KroSBL (the SBL family's `krosbl` with the IRS pruning settings),
PC-KroSBL β = 0.8 / 0.5 (`pc.pc_krosbl`), PC-SBL (`pc.pc_sbl`), cSBL (`pc.csbl_kron`: classic
SBL with the structured E-step; same iterates as `sbl.sbl` on the dense 288 x 5832 matrix, which
takes minutes per run on CPU) and OMP (`sbl.omp` on the dense matrix, 9 atoms = the true
sparsity, an oracle level; the reference's final script does not run OMP), plus "oracle":
least squares on the true support, a yardstick of how hard each realisation is.

As in the reference script, the pilots and IRS configurations are drawn once per run (from
PRNGKey(training_seed)); `training="per-trial"` draws them per realisation instead. Realisation t
draws its channel and noise from `fold_in(PRNGKey(0), t)` and reuses them at every SNR and method
(common random numbers). The cubic-cost baselines (PC-SBL, cSBL) run one realisation (all SNRs)
per harness chunk, so a long run can be interrupted and resumed; the table reports the
realisations finished so far (the first n of the same sequence) and says how many. NMSE: mean
(and median) over realisations of the per-realisation mean over configurations; SER: QPSK, 1e5
symbols per configuration (drawn as a binomial count, the same distribution as simulating the
symbols), plus the exact expected SER.
"""
from __future__ import annotations

from experiments import _env  # noqa: F401  (XLA flag before jax is imported)

# isort: split

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jsparse.core import montecarlo, records
from jsparse.core.kron import kron_dense
from jsparse.sbl import irs

SNRS = [4.0, 8.0, 12.0, 16.0, 20.0]
METHODS = ["svd", "am", "pc0.8", "pc0.5", "pcsbl", "csbl", "omp"]
DENSE = ("pcsbl", "csbl")  # O(M^3) per iteration: optionally fewer realisations
LABELS = {
    "svd": "SVD-KroSBL", "am": "AM-KroSBL", "pc0.8": "PC-KroSBL β=0.8", "pc0.5": "PC-KroSBL β=0.5",
    "pcsbl": "PC-SBL", "csbl": "cSBL", "omp": "OMP (9 atoms)", "oracle": "oracle LS (true support)",
}
# Reference means over 50 realisations (krosbl.md §7.3, from the authors' result files).
REFERENCE = {
    "svd": {"nmse": [0.609, 0.305, 0.194, 0.123, 0.105], "ser": [0.25, 0.14, 0.092, 0.060, 0.060]},
    "am": {"nmse": [0.714, 0.321, 0.197, 0.139, 0.070], "ser": [0.24, 0.071, 0.027, 0.0039, 6e-7]},
    "pcsbl": {"nmse": [1.00, 1.01, 0.905, 0.607, 0.375], "ser": [0.23, 0.18, 0.21, 0.19, 0.17]},
    "pc0.8": {"nmse": [0.312, 0.132, 0.049, 0.0089, 0.0029], "ser": [0.13, 0.017, 5e-4, 0.0, 0.0]},
    "pc0.5": {"nmse": [0.324, 0.142, 0.061, 0.0112, 0.0060], "ser": [0.14, 0.022, 5e-4, 0.0, 0.0]},
    "csbl": {"nmse": [0.953, 0.724, 0.463, 0.228, 0.144], "ser": [0.37, 0.24, 0.11, 0.10, 0.063]},
}
NUM_SYMBOLS = 100_000
TRAININGS = ("fixed", "matlab", "per-trial")


def estimate(method: str, p: irs.IRSProblem):
    """(x̂ (G³,), EM iterations) for one simulated problem."""
    from jsparse.sbl import csbl_kron, krosbl, omp, oracle_ls, pc_krosbl, pc_sbl

    nv = p.noise_var
    if method == "svd":  # IRS settings: relative pruning 0 below 25 dB, absolute 1e-4
        r = krosbl(p.y, p.factors, method="svd", noise_var=nv, prune=0.0, prune_abs=1e-4)
    elif method == "am":
        r = krosbl(p.y, p.factors, method="am", noise_var=nv, prune=(1e-2, 1e-1, 1e-3), prune_abs=1e-4, inner_tol=1e-4)
    elif method.startswith("pc0."):
        r = pc_krosbl(p.y, p.factors, beta=float(method[2:]), noise_var=nv)
    elif method == "pcsbl":
        r = pc_sbl(p.y, list(p.factors), beta=0.9, noise_var=nv)
    elif method == "csbl":
        r = csbl_kron(p.y, p.factors, noise_var=nv, prune=1e-4)
    elif method == "omp":
        r = omp(p.y, kron_dense(p.factors), max_atoms=9)
    elif method == "oracle":  # least squares on the true (Kronecker) support: a difficulty yardstick
        t = jnp.abs(p.x).reshape([f.shape[1] for f in p.factors]) > 0
        masks = tuple(jnp.any(t, axis=tuple(j for j in range(3) if j != i)) for i in range(3))
        return oracle_ls(p.y, list(p.factors), masks), jnp.zeros((), jnp.int32)
    else:
        raise ValueError(f"method: unknown {method!r}")
    return r.x, r.iterations


def problem(key, snr_db, dtype_name, training, training_seed) -> irs.IRSProblem:
    """One realisation. training="fixed": pilots and configurations drawn once from
    PRNGKey(training_seed) and shared by every realisation (the reference script);
    "matlab": the draw main.m makes right after MATLAB starts (`irs.matlab_training`), shared;
    "per-trial": drawn from the realisation's key."""
    dt = jnp.dtype(dtype_name)
    if training == "matlab":
        tr = irs.matlab_training(dtype=dt)
    elif training == "fixed":
        tr = irs.draw_training(jax.random.PRNGKey(training_seed), dtype=dt)
    else:
        tr = None
    return irs.simulate(key, snr_db, dtype=dt, training=tr)


def _score(method, p: irs.IRSProblem, snr_db, k_ser):
    x_hat, iters = estimate(method, p)
    est = irs.channels_from_x(x_hat, p.factors[0], p.ms_dict, p.factors[2])
    energy = jnp.sum(jnp.abs(p.channels) ** 2, axis=(-2, -1))
    return {
        "nmse": jnp.mean(irs.channel_nmse(x_hat, p)),
        "ser": jnp.mean(irs.ser_qpsk(est, p.channels, snr_db, key=k_ser, num_symbols=NUM_SYMBOLS)),
        "ser_expected": jnp.mean(irs.ser_qpsk(est, p.channels, snr_db)),
        "iterations": iters,
        "valid": p.valid,
        # Diagnostics of the draw: collinear Φ_MS columns (1 = unidentifiable MS angle pair) and the
        # weakest configuration's channel energy relative to the mean (per-configuration NMSE blows up).
        "ms_coherence": irs.ms_coherence(p.factors[1]),
        "min_config_energy": jnp.min(energy) / jnp.mean(energy),
    }


def trial(key, snr_db, method, dtype_name, training, training_seed):
    k_sim, k_ser = jax.random.split(key)
    return _score(method, problem(k_sim, snr_db, dtype_name, training, training_seed), snr_db, k_ser)


def dense_trial(key, method, dtype_name, training, training_seed):
    """All SNRs of one realisation in one item (same draws as `trial`), so that a partial dense
    sweep holds whole realisations: outputs have a trailing SNR axis."""
    k_sim, k_ser = jax.random.split(key)
    rdt = jnp.finfo(jnp.dtype(dtype_name)).dtype
    snrs = jnp.asarray(SNRS, rdt)
    return lax.map(lambda s: _score(method, problem(k_sim, s, dtype_name, training, training_seed), s, k_ser), snrs)


def _grid(methods, dtype_name, training, training_seed, snrs=True):
    g = {"method": methods}
    if snrs:
        g["snr_db"] = SNRS
    return g | {"dtype_name": [dtype_name], "training": [training], "training_seed": [training_seed]}


def _cheap_sweep(methods, num_trials, cfg, folder):
    return montecarlo.sweep(
        trial, _grid(methods, *cfg), num_trials=num_trials, key=0,
        chunk_size=len(SNRS) * num_trials,  # one dispatch per method
        batch_size=min(25, len(SNRS) * num_trials), out_dir=folder,
        name=f"irs_{cfg[0]}_{cfg[1]}{cfg[2]}_{num_trials}", on_mismatch="recompute",
    )


def _dense_name(method, num_trials, cfg):
    return f"irs_dense_{method}_{cfg[0]}_{cfg[1]}{cfg[2]}_{num_trials}"


def _dense_sweep(method, num_trials, cfg, folder):
    """One realisation (all SNRs) per chunk, so an interrupted run resumes at the next realisation."""
    return montecarlo.sweep(
        dense_trial, _grid([method], *cfg, snrs=False), num_trials=num_trials, key=0,
        chunk_size=1, batch_size=1, out_dir=folder, name=_dense_name(method, num_trials, cfg), on_mismatch="recompute",
    )


def _finished_realisations(method, num_trials, cfg, folder):
    """Outputs (trials, SNR) of the contiguous prefix of finished realisations of a dense sweep
    (chunk c = realisation c), or None."""
    if folder is None:
        return None
    return montecarlo.load_finished(folder, _dense_name(method, num_trials, cfg), trial_fn=dense_trial)


def _x64_scope(x64: bool):
    """Context for the run: x64 on when asked, else the process's current setting left as it is."""
    return jax.enable_x64(True) if x64 else jax.enable_x64(bool(jax.config.read("jax_enable_x64")))


def _db(v):
    return 10 * np.log10(np.maximum(v, 1e-300))


def _row(a: dict) -> dict:
    """Summary of per-trial outputs a[k] of shape (SNR, trials)."""
    return {
        "trials": int(a["nmse"].shape[-1]),
        "nmse": a["nmse"].mean(-1), "nmse_median": np.median(a["nmse"], -1),
        "ser": a["ser"].mean(-1), "ser_expected": a["ser_expected"].mean(-1),
        "iterations": a["iterations"].mean(-1), "all_valid": bool(a["valid"].all()),
        "per_trial_nmse": a["nmse"],
    }


def seed_study(out_dir: Path, seeds, *, methods=("pc0.8", "oracle"), trials: int = 50, x64: bool = True) -> str:
    """Mean and median NMSE over `trials` realisations for several shared-training draws (seeds):
    how much the 50-realisation mean depends on the one pilot/configuration draw. One compile:
    the seed is a traced grid value. Writes seed_study.md / seed_study.json into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype_name = "complex128" if x64 else "complex64"
    seeds = [int(v) for v in seeds]
    with _x64_scope(x64):
        res = montecarlo.sweep(
            trial, {"method": list(methods), "snr_db": SNRS, "dtype_name": [dtype_name], "training": ["fixed"],
                    "training_seed": seeds},
            num_trials=trials, key=0, chunk_size=len(SNRS) * len(seeds) * trials,
            batch_size=min(25, len(SNRS) * trials), out_dir=out_dir / "checkpoints",
            name=f"irs_seeds_{dtype_name}_{'-'.join(map(str, seeds))}_{trials}", on_mismatch="recompute",
        )
    nmse = res.arrays["nmse"][:, :, 0, 0]  # (method, snr, seed, trial)
    lines = ["| method | training seed | " + " | ".join(f"mean / median {s:.0f} dB" for s in SNRS) + " |",
             "|---|---|" + "---|" * len(SNRS)]
    for i, m in enumerate(methods):
        for j, seed in enumerate(seeds):
            v = nmse[i, :, j]
            lines.append(f"| {LABELS[m]} | {seed} | " + " | ".join(
                f"{_db(v[k].mean()):.1f} / {_db(np.median(v[k])):.1f}" for k in range(len(SNRS))) + " |")
    text = (f"NMSE (dB) over {trials} realisations for several draws of the shared pilots/configurations "
            f"({dtype_name}; realisations t = 0..{trials - 1} identical across seeds).\n\n" + "\n".join(lines) + "\n")
    (out_dir / "seed_study.md").write_text(text)
    records.write_json(out_dir / "seed_study.json", {"seeds": seeds, "methods": list(methods), "snr_db": SNRS,
                                                     "nmse": nmse, "meta": res.meta})
    return text


def run(out_dir: Path, *, quick: bool = True, resume: bool = True, trials: int | None = None,
        dense_trials: int | None = None, x64: bool = True, methods=None, training: str = "fixed",
        training_seed: int = 0, dense: str | None = None, **_options) -> str:
    """Run the IRS sweep into out_dir and return the Markdown summary.

    trials: realisations for the Kronecker methods (default 2 quick, 50 full); dense_trials: target
    realisations for PC-SBL and cSBL (default 1 quick, `trials` full); dense: "run" (compute the
    missing realisations, resuming from checkpoints; the default with quick=False), "load" (report
    only the finished ones; needs resume) or "skip" (the default with quick=True: one cSBL
    realisation alone takes minutes on 2 cores); training: "fixed" (drawn once from training_seed, the reference's
    design), "matlab" (the reference's own draw, `irs.matlab_training`) or "per-trial"; training_seed: seed of
    the shared pilots/configurations.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if training not in TRAININGS:
        raise ValueError(f"training: expected one of {TRAININGS}, got {training!r}")
    dense = dense or ("skip" if quick else "run")
    if dense not in ("run", "load", "skip"):
        raise ValueError(f"dense: expected 'run', 'load' or 'skip', got {dense!r}")
    num_trials = trials or (2 if quick else 50)
    num_dense = dense_trials or (1 if quick else num_trials)
    methods = list(methods or METHODS + ["oracle"])
    dtype_name = "complex128" if x64 else "complex64"
    cfg = (dtype_name, training, int(training_seed))
    folder = out_dir / "checkpoints" if resume else None
    ctx = _x64_scope(x64)
    table, timing = {}, {}
    t0 = time.perf_counter()
    with ctx:
        cheap = [m for m in methods if m not in DENSE]
        if cheap:
            res = _cheap_sweep(cheap, num_trials, cfg, folder)
            for i, m in enumerate(res.grid["method"]):
                table[m] = _row({k: v[i, :, 0, 0, 0] for k, v in res.arrays.items()})
            timing.update({f"compile[{k}]": v for k, v in res.meta["compile_seconds"].items()})
            timing[f"run[{','.join(cheap)}]"] = res.meta["run_seconds"]
        for m in (m for m in methods if m in DENSE and dense != "skip"):
            if dense == "run":
                res = _dense_sweep(m, num_dense, cfg, folder)
                a = {k: v[0, 0, 0, 0] for k, v in res.arrays.items()}  # (trials, SNR)
                timing.update({f"compile[{k}]": v for k, v in res.meta["compile_seconds"].items()})
                timing[f"run[{m}]"] = res.meta["run_seconds"]
            else:
                a = _finished_realisations(m, num_dense, cfg, folder)
            if a is not None:
                table[m] = _row({k: np.moveaxis(v, 0, -1) for k, v in a.items()})
    wall = time.perf_counter() - t0

    order = [m for m in METHODS + ["oracle"] if m in table]
    table = {m: table[m] for m in order}
    from experiments.irs import report

    report.plot(out_dir, table)
    summary = report.summary(table, dtype_name=dtype_name, training=training, training_seed=training_seed, wall=wall)
    (out_dir / "summary.md").write_text(summary)
    records.write_json(out_dir / "results.json", {
        "settings": {"setup": irs.IRSSetup()._asdict(), "snr_db": SNRS, "methods": order, "trials": num_trials,
                     "dense_trials_target": num_dense, "dtype": dtype_name, "seed": 0, "training": training,
                     "training_seed": training_seed, "num_symbols": NUM_SYMBOLS},
        "results": table, "reference": REFERENCE, "timing_seconds": timing, "wall_seconds": wall,
        "environment": records.environment(),
    })
    return summary


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m experiments.irs.run", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--full", action="store_true", help="50 realisations, PC-SBL and cSBL included (the paper's size; "
                                                          "default: quick)")
    ap.add_argument("--out", type=Path, default=Path("results/irs"), help="output folder")
    ap.add_argument("--trials", type=int, default=None, help="realisations (default: 2 quick, 50 full)")
    ap.add_argument("--dense-trials", type=int, default=None,
                    help="target realisations for PC-SBL and cSBL (default: 1 quick, all full)")
    ap.add_argument("--dense", choices=("run", "load", "skip"), default=None,
                    help="PC-SBL/cSBL: compute missing realisations (resumable; default with --full), "
                         "report finished ones only, or skip (default without --full)")
    ap.add_argument("--training", choices=TRAININGS, default="fixed",
                    help="pilots/IRS configurations drawn once per run from --training-seed (reference design), "
                         "the reference's own draw (MATLAB's start-up random stream), or per realisation")
    ap.add_argument("--training-seed", type=int, default=0, help="seed of the shared pilots / configurations")
    ap.add_argument("--c64", dest="x64", action="store_false",
                    help="complex64 instead of complex128 (loses ~7 dB, see docs/irs.md; default: complex128)")
    ap.add_argument("--methods", nargs="*", default=None, choices=METHODS + ["oracle"],
                    help="methods to run (default: all)")
    ap.add_argument("--no-resume", dest="resume", action="store_false",
                    help="ignore saved checkpoints and start over (default: resume)")
    ap.add_argument("--seed-study", type=int, nargs="*", default=None, metavar="SEED",
                    help="instead of the table: PC-KroSBL β=0.8 and oracle LS for these training seeds "
                         "(default: the table)")
    return ap


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    if a.seed_study:
        print(seed_study(a.out, a.seed_study, trials=a.trials or 50, x64=a.x64))
        return
    print(run(a.out, quick=not a.full, resume=a.resume, trials=a.trials, dense_trials=a.dense_trials, x64=a.x64,
              methods=a.methods, training=a.training, training_seed=a.training_seed, dense=a.dense))


if __name__ == "__main__":
    main()
