"""RRLbS reproduction: every method on synthetic scenes (several SNRs), Samson and Jasper Ridge
(when the files are found) and the outlier-channel study (5/10/20 % of bands corrupted).

    python -m experiments unmixing [--quick|--full] [--out results] [--data-root DIR]
    python -m experiments.unmixing.run --full --out results/unmixing

Every NMF-family method starts from the same VCA-FCLS point per seed (seed = VCA key and, in the
outlier study, the choice of corrupted bands). Seeds run as one compiled `lax.map` over seeds per (scene, method).
Each finished (scene, method) cell is saved under `cells/`, so a re-run resumes.
"""
from __future__ import annotations

from experiments import _env  # noqa: F401  (XLA flags before jax)

import argparse
import functools
import io
import os
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jsparse import unmixing as U
from jsparse.core import metrics as core_metrics
from jsparse.core import records
from jsparse.core.progress import progress
from jsparse.unmixing import datasets, metrics, plots, synthetic

METHODS = {
    "VCA-FCLS": (None, {}),
    "NMF": (U.nmf, {}),
    "L1/2-NMF": (U.l12_nmf, {}),
    "l21-NMF": (U.l21_nmf, {}),
    "RRLbS": (U.rrlbs, {}),
    "RRLbS-R2": (U.rrlbs, {"map_form": "exponent"}),
}
ROBUSTNESS_METHODS = ("NMF", "L1/2-NMF", "l21-NMF", "RRLbS")
INITS = ("vca", "vca_whitened")  # the shared start: VCA-FCLS on raw or on noise-whitened bands
DEFAULT_INIT = "vca_whitened"  # robust to outlier bands (docs/unmixing.md, "Diagnosis")


def settings(quick: bool) -> dict:
    if quick:
        return dict(seeds=3, max_iters=150, tol=1e-6, stride=2, synth_shape=(40, 40), snrs=(20.0, 40.0),
                    fractions=(0.0, 0.05, 0.1, 0.2), outlier_kind="noise", outlier_strength=0.5, init=DEFAULT_INIT)
    return dict(seeds=5, max_iters=1000, tol=1e-6, stride=1, synth_shape=(100, 100), snrs=(20.0, 30.0, 40.0),
                fractions=(0.0, 0.05, 0.1, 0.2), outlier_kind="noise", outlier_strength=0.5, init=DEFAULT_INIT)


class Scene(NamedTuple):
    name: str
    Ys: np.ndarray  # (S, L, N)
    endmembers: np.ndarray  # (L, R)
    abundances: np.ndarray  # (R, N)
    shape: tuple
    bad: np.ndarray  # (S, L) corrupted bands
    names: tuple


def default_data_root() -> Path:
    env = os.environ.get(datasets.ENV_VAR)
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "hyperspectral"


def _subsample(d: datasets.HSIDataset, stride: int):
    if stride == 1:
        return d.Y, d.abundances, d.shape
    H, W = d.shape
    rows, cols = np.arange(0, H, stride), np.arange(0, W, stride)
    idx = (rows[:, None] + cols[None, :] * H).T.ravel()  # column-major order of the kept grid
    return d.Y[:, idx], d.abundances[:, idx], (len(rows), len(cols))


def build_scenes(cfg: dict, data_root: Path) -> tuple[list[Scene], list[str]]:
    notes, real = [], {}
    for name in ("samson", "jasper", "urban"):
        try:
            real[name] = datasets.load_dataset(name, root=data_root)
        except FileNotFoundError as err:
            notes.append(f"{name}: skipped ({err})")
    S = cfg["seeds"]
    scenes = []
    if "jasper" in real:
        M_syn, syn_names = real["jasper"].endmembers, real["jasper"].names
    else:
        M_syn = np.asarray(synthetic.smooth_endmembers(jax.random.PRNGKey(11), 120, 4, jnp.float64))
        syn_names = tuple(f"endmember {k + 1}" for k in range(4))
    for snr in cfg["snrs"]:
        scs = [synthetic.make_scene(jax.random.PRNGKey(1000 + s), jnp.asarray(M_syn), cfg["synth_shape"], snr_db=snr)
               for s in range(S)]
        # The synthetic scenes differ per seed; the ground truth of seed 0 is kept for plots, and
        # per-seed truths are evaluated in `run_cell` through `truths`.
        scenes.append(Scene(f"synthetic SNR {snr:g} dB", np.stack([np.asarray(c.Y) for c in scs]), M_syn,
                            np.stack([np.asarray(c.abundances) for c in scs]), cfg["synth_shape"],
                            np.zeros((S, M_syn.shape[0]), bool), syn_names))
    for name, d in real.items():
        Y, A, shape = _subsample(d, cfg["stride"])
        for frac in cfg["fractions"]:
            Ys, bads = [], []
            for s in range(S):
                if frac > 0:
                    Yc, bad = synthetic.corrupt_bands(jax.random.PRNGKey(2000 + s), jnp.asarray(Y), frac, shape=shape,
                                                      kind=cfg["outlier_kind"], strength=cfg["outlier_strength"])
                    Ys.append(np.asarray(Yc)), bads.append(np.asarray(bad))
                else:
                    Ys.append(Y), bads.append(np.zeros(Y.shape[0], bool))
            label = f"{name}" if frac == 0 else f"{name} +{frac:.0%} bad bands"
            scenes.append(Scene(label, np.stack(Ys), d.endmembers, np.stack([A] * S), shape, np.stack(bads), d.names))
    return scenes, notes


def _batched(fn):
    """fn over a leading seed axis, one compiled program. `lax.map` rather than `vmap`: on XLA:CPU the
    vmapped updates cost 4.6x the CPU time of a loop (docs/unmixing.md, Benchmark); lax.map ~1.15x."""
    return jax.jit(lambda *args: jax.lax.map(lambda a: fn(*a), args))


@functools.lru_cache(maxsize=None)
def _make_init(R: int, fcls_iters: int, init: str):
    def init_fn(Y, key):
        res = U.vca(Y, R, key=key, fcls_iters=fcls_iters, tol=0.0, whiten=(init == "vca_whitened"))
        return res.endmembers, res.abundances

    return _batched(init_fn)


@functools.lru_cache(maxsize=None)
def _make_method(method: str, R: int, max_iters: int, tol: float):
    """One compiled program over the seeds per method and size (cached: later cells reuse the compile)."""
    fn, kw = METHODS[method]

    def call(Y, M0, A0):
        return fn(Y, R, init_endmembers=M0, init_abundances=A0, max_iters=max_iters, tol=tol, **kw)

    return _batched(call)


def run_cell(scene: Scene, method: str, cfg: dict, init_cache: dict) -> tuple[dict, dict]:
    """All seeds of one (scene, method): per-seed metrics and the seed-0 arrays for plots."""
    Ys = jnp.asarray(scene.Ys)
    S, L, N = Ys.shape
    R = scene.endmembers.shape[1]
    if scene.name not in init_cache:
        keys = jnp.stack([jax.random.PRNGKey(s) for s in range(S)])
        init_cache[scene.name] = _make_init(R, 200, cfg["init"])(Ys, keys)
    M0, A0 = init_cache[scene.name]
    fn, kw = METHODS[method]
    t0 = time.perf_counter()
    if fn is None:
        M, A = M0, A0
        H = jnp.zeros((S, N), Ys.dtype)
        iters = np.zeros(S, int)
        rise = np.full(S, np.nan)
    else:
        f = 1e-2
        A0f = (A0 + f) / (1.0 + R * f)
        M0f = jnp.maximum(M0, 1e-6 * jnp.max(Ys, axis=(1, 2), keepdims=True))
        res = _make_method(method, R, cfg["max_iters"], cfg["tol"])(Ys, M0f, A0f)
        M, A, H = res.endmembers, res.abundances, res.guidance
        iters = np.asarray(res.iterations)
        tr = np.asarray(res.objective, np.float64)
        with np.errstate(invalid="ignore"):
            steps = np.diff(tr, axis=1) / np.abs(tr[:, :-1])
        rise = np.nanmax(np.where(np.isfinite(steps), steps, -np.inf), axis=1)  # largest relative one-step rise
    M, A, H = (np.asarray(jax.block_until_ready(x)) for x in (M, A, H))
    seconds = time.perf_counter() - t0
    out = {"sad": [], "sad_clean_bands": [], "rmse": [], "recon_clean_bands": [], "duplicates": [],
           "iterations": iters.tolist(), "seconds": seconds, "max_objective_rise": rise.tolist()}
    for s in range(S):
        truth_A = scene.abundances[s]
        ev = metrics.evaluate(M[s], A[s], scene.endmembers, truth_A)
        good = ~scene.bad[s]
        evc = metrics.evaluate(M[s][good], A[s], scene.endmembers[good], truth_A, scene.Ys[s][good])
        out["sad"].append(ev.mean_sad), out["rmse"].append(ev.mean_rmse)
        out["sad_clean_bands"].append(evc.mean_sad), out["recon_clean_bands"].append(evc.reconstruction)
        out["duplicates"].append(ev.duplicates)
        if s == 0:
            arrays = {"abundances": A[0][ev.order], "guidance": H[0], "endmembers_all": M,
                      "band_residuals": metrics.band_residuals(scene.Ys[0], M[0], A[0])}
    return out, arrays


def _ms(values) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.4f} ± {v.std():.4f}"


def _sad_on_bands(M, T, good) -> float:
    order = metrics.match_endmembers(M[good], T[good])
    return float(np.mean(np.asarray(core_metrics.sad(M[good][:, order], T[good]))))


ORACLE_NOTE = ("\"LS given true A\" is not a method: it fits every band of the observed image by least "
               "squares given the ground-truth abundances, M = argmin ||Y - M A_true||_F (clipped at 0). Its rise "
               "shows what fitting the corrupted bands costs the all-band SAD even with perfect abundances.")


def oracle_sad(scene: Scene) -> np.ndarray:
    """(S,) all-band mean SAD of the least-squares endmembers given the true abundances (per seed)."""
    out = []
    for s in range(scene.Ys.shape[0]):
        A = scene.abundances[s]
        M = np.maximum(np.linalg.lstsq(A.T, scene.Ys[s].T, rcond=None)[0].T, 0.0)
        out.append(metrics.evaluate(M, A, scene.endmembers, A).mean_sad)
    return np.asarray(out)


def _oracle_row(d: str, by_name: dict, cfg: dict) -> str:
    vals = [oracle_sad(by_name[d if f == 0 else f"{d} +{f:.0%} bad bands"]) for f in cfg["fractions"]]
    rise = ""
    if 0.1 in cfg["fractions"]:
        rise = f"{100 * (vals[cfg['fractions'].index(0.1)].mean() / vals[0].mean() - 1):+.0f} %"
    return f"| {d} | *LS given true A* | " + " | ".join(_ms(v) for v in vals) + f" | {rise} |"


def robust_rows(scenes: list[Scene], arrays: dict, cfg: dict) -> list[str]:
    """SAD on the uncorrupted bands, corrupted run vs clean run on the *same* bands (per seed).

    The corrupted bands carry no information about the true spectra, so no loss can recover the
    endmembers there; comparing on the remaining bands isolates the effect on what is recoverable.
    """
    lines = ["### Outlier bands: SAD on the uncorrupted bands, clean run vs corrupted run on the same bands", "",
             "| data | method | " + " | ".join(f"clean / {f:.0%}" for f in cfg["fractions"][1:]) +
             " | rise at 10 % |", "|---" * (len(cfg["fractions"]) + 2) + "|"]
    by_name = {s.name: s for s in scenes}
    reals = sorted({s.name.split(" +")[0] for s in scenes if "bad bands" in s.name})
    for d in reals:
        T = by_name[d].endmembers
        for m in ROBUSTNESS_METHODS:
            clean_M = arrays[(d, m)]["endmembers_all"]
            row, rise = [], ""
            for f in cfg["fractions"][1:]:
                sc = by_name[f"{d} +{f:.0%} bad bands"]
                bad_M = arrays[(sc.name, m)]["endmembers_all"]
                c = [_sad_on_bands(clean_M[s], T, ~sc.bad[s]) for s in range(len(sc.bad))]
                b = [_sad_on_bands(bad_M[s], T, ~sc.bad[s]) for s in range(len(sc.bad))]
                row.append(f"{np.mean(c):.4f} / {np.mean(b):.4f} ± {np.std(b):.4f}")
                if f == 0.1:
                    rise = f"{100 * (np.mean(b) / np.mean(c) - 1):+.0f} %"
            lines.append(f"| {d} | {m} | " + " | ".join(row) + f" | {rise} |")
    return lines + [""]


def tables(scenes: list[Scene], cells: dict, cfg: dict, arrays: dict) -> str:
    methods = list(METHODS)
    base = [s.name for s in scenes if "bad bands" not in s.name]
    lines = []
    for metric, title in (("sad", "Mean SAD (radians, all bands)"), ("rmse", "Abundance RMSE")):
        lines += [f"### {title}, mean ± std over {cfg['seeds']} seeds", "",
                  "| scene | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
        for name in base:
            vals = [np.mean(cells[(name, m)][metric]) for m in methods]
            best = int(np.argmin(vals))
            row = [("**" + _ms(cells[(name, m)][metric]) + "**") if i == best else _ms(cells[(name, m)][metric])
                   for i, m in enumerate(methods)]
            lines.append(f"| {name} | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["### Iterations, largest relative one-step objective rise, wall time (all scenes)", "",
              "| method | mean iterations | largest rise | seconds (all cells) |", "|---|---|---|---|"]
    for m in methods[1:]:
        its = np.concatenate([cells[(s.name, m)]["iterations"] for s in scenes])
        rises = np.concatenate([np.asarray(cells[(s.name, m)].get("max_objective_rise", [np.nan]), float)
                                for s in scenes])
        secs = sum(cells[(s.name, m)]["seconds"] for s in scenes)
        lines.append(f"| {m} | {its.mean():.0f} | {np.nanmax(rises):.2e} | {secs:.1f} |")
    lines.append("")
    reals = sorted({s.name.split(" +")[0] for s in scenes if "bad bands" in s.name})
    by_name = {s.name: s for s in scenes}
    # (results.json also holds the SAD over the uncorrupted bands of each run; it is not tabulated
    # because its band set differs between fractions, so its "rise" would not be comparable.)
    for metric, title in (("sad", "SAD (all bands)"), ("rmse", "abundance RMSE")):
        lines += [f"### Outlier bands: {title} vs corrupted fraction (rise at 10 % relative to clean)", "",
                  "| data | method | " + " | ".join(f"{f:.0%}" for f in cfg["fractions"]) + " | rise at 10 % |",
                  "|---" * (len(cfg["fractions"]) + 3) + "|"]
        for d in reals:
            for m in ROBUSTNESS_METHODS:
                vals, row = [], []
                for f in cfg["fractions"]:
                    key = (d if f == 0 else f"{d} +{f:.0%} bad bands", m)
                    vals.append(np.mean(cells[key][metric])), row.append(_ms(cells[key][metric]))
                rise = ""
                if 0.1 in cfg["fractions"]:
                    rise = f"{100 * (vals[cfg['fractions'].index(0.1)] / vals[0] - 1):+.0f} %"
                lines.append(f"| {d} | {m} | " + " | ".join(row) + f" | {rise} |")
            if metric == "sad":
                lines.append(_oracle_row(d, by_name, cfg))
        lines.append("")
    if reals:
        lines += [ORACLE_NOTE, ""]
    if any("bad bands" in sc.name for sc in scenes):
        lines += robust_rows(scenes, arrays, cfg)
    return "\n".join(lines)


def _save_arrays(path: Path, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    records.atomic_write_bytes(path, buf.getvalue())


def _load_arrays(path: Path) -> dict:
    """Named arrays of a cell (also reads the older `save_pytree` files, whose leaves are named
    leaf_00000... in sorted-key order)."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    if all(k.startswith("leaf_") for k in arrays):
        names = sorted(["abundances", "band_residuals", "endmembers_all", "guidance"])
        arrays = {n: arrays[f"leaf_{i:05d}"] for i, n in enumerate(names)}
    return arrays


def run(out_dir: Path, *, quick: bool = True, resume: bool = True, data_root=None, **options) -> str:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cells_dir = out_dir / "cells"
    cells_dir.mkdir(exist_ok=True)
    jax.config.update("jax_enable_x64", True)
    cfg = settings(quick)
    cfg.update({k: v for k, v in options.items() if k in cfg})
    root = Path(data_root) if data_root is not None else default_data_root()
    stored = cells_dir / "settings.json"
    if resume and stored.exists() and records.read_json(stored) != records.to_builtin(cfg):
        raise ValueError(f"out_dir: {cells_dir} holds cells of other settings ({records.read_json(stored)}); "
                         "use another --out or --no-resume")
    records.write_json(stored, cfg)
    scenes, notes = build_scenes(cfg, root)
    cells, arrays, init_cache = {}, {}, {}
    todo = [(sc, m) for sc in scenes for m in METHODS]
    for sc, m in progress(todo, desc="unmixing cells"):
        stem = cells_dir / (f"{sc.name}__{m}".replace(" ", "_").replace("/", "").replace("%", "pc").replace("+", ""))
        if resume and stem.with_suffix(".json").exists() and stem.with_suffix(".npz").exists():
            cells[(sc.name, m)] = records.read_json(stem.with_suffix(".json"))
            arrays[(sc.name, m)] = _load_arrays(stem.with_suffix(".npz"))
            continue
        cell, arr = run_cell(sc, m, cfg, init_cache)
        _save_arrays(stem.with_suffix(".npz"), arr)
        records.write_json(stem.with_suffix(".json"), cell)
        cells[(sc.name, m)], arrays[(sc.name, m)] = cell, arr

    # Figures: abundance maps + guidance for each clean scene; band residuals at 10 % outliers.
    figures = []
    for sc in scenes:
        if "bad bands" in sc.name or ("synthetic" in sc.name and "30" not in sc.name and len(scenes) > len(cfg["snrs"])):
            continue
        slug = sc.name.split()[0] + ("_" + sc.name.split()[2] if "synthetic" in sc.name else "")
        maps = {"ground truth": sc.abundances[0], **{m: arrays[(sc.name, m)]["abundances"] for m in METHODS}}
        plots.plot_abundance_maps(out_dir / f"abundances_{slug}.png", maps, sc.shape, sc.names, sc.name)
        plots.plot_guidance(out_dir / f"guidance_{slug}.png", arrays[(sc.name, "RRLbS")]["guidance"],
                            sc.abundances[0], sc.shape, f"RRLbS guidance map, {sc.name}")
        figures += [f"abundances_{slug}.png", f"guidance_{slug}.png"]
    for sc in scenes:
        if sc.name.endswith("+10% bad bands"):
            slug = sc.name.split()[0]
            res = {m: arrays[(sc.name, m)]["band_residuals"] for m in ROBUSTNESS_METHODS}
            plots.plot_band_residuals(out_dir / f"band_residuals_{slug}.png", res, sc.bad[0], sc.name)
            figures.append(f"band_residuals_{slug}.png")

    table = tables(scenes, cells, cfg, arrays)
    size = "quick" if quick else "full"
    head = [
        f"RRLbS and baselines ({size} size: {cfg['seeds']} seeds, {cfg['max_iters']} iterations max, tol "
        f"{cfg['tol']:g}, real images subsampled by stride {cfg['stride']}, synthetic {cfg['synth_shape']}).",
        f"All NMF-family methods start from the same VCA-FCLS point per seed (init = {cfg['init']}; the VCA-FCLS "
        "column is that start); SAD after Hungarian matching.",
        "Paper reference numbers: none available (only the abstract of arXiv:1409.0685 could be read; "
        "docs/unmixing.md). The paper's claims are checked relatively: lowest SAD/RMSE on the real scenes, "
        "small degradation with outlier bands.",
        "",
    ] + [f"- {n}" for n in notes] + [""]
    summary = "\n".join(head) + table + "\nFigures: " + ", ".join(figures) + "\n"
    (out_dir / "summary.md").write_text(summary)
    records.write_json(out_dir / "results.json", {
        "settings": cfg, "quick": quick, "data_root": str(root), "seeds": list(range(cfg["seeds"])),
        "methods": {m: kw for m, (_, kw) in METHODS.items()}, "environment": records.environment(),
        "cells": {f"{s} | {m}": v for (s, m), v in cells.items()}, "notes": notes,
    })
    return summary


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="paper size (5 seeds, full images, 1000 iterations)")
    p.add_argument("--out", type=Path, default=Path("results/unmixing"))
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--no-resume", dest="resume", action="store_false")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--max-iters", dest="max_iters", type=int, default=None)
    p.add_argument("--stride", type=int, default=None, help="spatial subsampling of the real images")
    p.add_argument("--fractions", type=float, nargs="+", default=None, help="outlier-band fractions (include 0)")
    p.add_argument("--snrs", type=float, nargs="*", default=None, help="synthetic SNRs in dB (none: no synthetic scenes)")
    p.add_argument("--init", choices=INITS, default=None,
                   help="shared start of every method: VCA-FCLS on raw or noise-whitened bands")
    a = p.parse_args()
    opts = {k: v for k, v in (("seeds", a.seeds), ("max_iters", a.max_iters), ("stride", a.stride), ("init", a.init),
                              ("fractions", tuple(a.fractions) if a.fractions else None),
                              ("snrs", tuple(a.snrs) if a.snrs is not None else None)) if v is not None}
    print(run(a.out, quick=not a.full, resume=a.resume, data_root=a.data_root, **opts))
