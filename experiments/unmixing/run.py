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

# isort: split
import argparse
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.unmixing.report import tables
from experiments.unmixing.scenes import Scene, build_scenes, default_data_root
from jsparse import unmixing as U
from jsparse.core import records
from jsparse.core.code_fingerprint import code_fingerprint
from jsparse.core.progress import progress
from jsparse.unmixing import metrics, plots

METHODS = {
    "VCA-FCLS": (None, {}),
    "NMF": (U.nmf, {}),
    "L1/2-NMF": (U.l12_nmf, {}),
    "l21-NMF": (U.l21_nmf, {}),
    "RRLbS": (U.rrlbs, {}),
    "RRLbS-R2": (U.rrlbs, {"map_form": "exponent"}),
}
ROBUSTNESS_METHODS = ("NMF", "L1/2-NMF", "l21-NMF", "RRLbS")
INITS = ("vca", "vca_whitened", "vca_screened")  # the shared start: VCA-FCLS on raw, noise-whitened or screened bands
DEFAULT_INIT = "vca_whitened"  # robust to outlier bands (docs/unmixing.md, "Diagnosis")


def settings(quick: bool) -> dict:
    if quick:
        return dict(seeds=3, max_iters=150, tol=1e-6, stride=2, synth_shape=(40, 40), snrs=(20.0, 40.0),
                    fractions=(0.0, 0.05, 0.1, 0.2), outlier_kind="noise", outlier_strength=0.5, init=DEFAULT_INIT)
    return dict(seeds=5, max_iters=1000, tol=1e-6, stride=1, synth_shape=(100, 100), snrs=(20.0, 30.0, 40.0),
                fractions=(0.0, 0.05, 0.1, 0.2), outlier_kind="noise", outlier_strength=0.5, init=DEFAULT_INIT)


def _batched(fn):
    """fn over a leading seed axis, one compiled program. `lax.map` rather than `vmap`: on XLA:CPU the
    vmapped updates cost 4.6x the CPU time of a loop (docs/unmixing.md, Benchmark); lax.map ~1.15x."""
    return jax.jit(lambda *args: jax.lax.map(lambda a: fn(*a), args))


@functools.lru_cache(maxsize=None)
def _make_init(R: int, fcls_iters: int, init: str):
    def init_fn(Y, key):
        res = U.vca(Y, R, key=key, fcls_iters=fcls_iters, tol=0.0, whiten=(init == "vca_whitened"),
                    screen=(init == "vca_screened"))
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
        M0f, A0f = jax.vmap(U.floor_start)(Ys, M0, A0)  # the floored start of rrlbs & co. (init_floor 1e-2)
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
        for name, value in (("sad", ev.mean_sad), ("rmse", ev.mean_rmse), ("sad_clean_bands", evc.mean_sad),
                            ("recon_clean_bands", evc.reconstruction), ("duplicates", ev.duplicates)):
            out[name].append(value)
        if s == 0:
            arrays = {"abundances": A[0][ev.order], "guidance": H[0], "endmembers_all": M,
                      "band_residuals": metrics.band_residuals(scene.Ys[0], M[0], A[0])}
    return out, arrays


def load_cell_arrays(path: Path) -> dict:
    """Named arrays of a cell (also reads the older `save_pytree` files, whose leaves are named
    leaf_00000... in sorted-key order)."""
    arrays = records.load_arrays(path)
    if all(k.startswith("leaf_") for k in arrays):
        names = sorted(["abundances", "band_residuals", "endmembers_all", "guidance"])
        arrays = {n: arrays[f"leaf_{i:05d}"] for i, n in enumerate(names)}
    return arrays


def _cell_stem(cells_dir: Path, scene: str, method: str) -> Path:
    return cells_dir / (f"{scene}__{method}".replace(" ", "_").replace("/", "").replace("%", "pc").replace("+", ""))


def run_cells(scenes: list[Scene], cfg: dict, cells_dir: Path, resume: bool) -> tuple[dict, dict]:
    """Every (scene, method) cell, each saved as it finishes (json + npz) and reloaded when resuming."""
    cells, arrays, init_cache = {}, {}, {}
    todo = [(sc, m) for sc in scenes for m in METHODS]
    for sc, m in progress(todo, desc="unmixing cells"):
        stem = _cell_stem(cells_dir, sc.name, m)
        if resume and stem.with_suffix(".json").exists() and stem.with_suffix(".npz").exists():
            cells[(sc.name, m)] = records.read_json(stem.with_suffix(".json"))
            arrays[(sc.name, m)] = load_cell_arrays(stem.with_suffix(".npz"))
            continue
        cell, arr = run_cell(sc, m, cfg, init_cache)
        records.save_arrays(stem.with_suffix(".npz"), arr)
        records.write_json(stem.with_suffix(".json"), cell)
        cells[(sc.name, m)], arrays[(sc.name, m)] = cell, arr
    return cells, arrays


def figures(scenes: list[Scene], arrays: dict, cfg: dict, out_dir: Path) -> list[str]:
    """Abundance maps + guidance for each clean scene; band residuals at 10 % outliers. Returns file names."""
    names = []
    for sc in scenes:
        other_synthetic = "synthetic" in sc.name and "30" not in sc.name and len(scenes) > len(cfg["snrs"])
        if "bad bands" in sc.name or other_synthetic:
            continue
        slug = sc.name.split()[0] + ("_" + sc.name.split()[2] if "synthetic" in sc.name else "")
        maps = {"ground truth": sc.abundances[0], **{m: arrays[(sc.name, m)]["abundances"] for m in METHODS}}
        plots.plot_abundance_maps(out_dir / f"abundances_{slug}.png", maps, sc.shape, sc.names, sc.name)
        plots.plot_guidance(out_dir / f"guidance_{slug}.png", arrays[(sc.name, "RRLbS")]["guidance"],
                            sc.abundances[0], sc.shape, f"RRLbS guidance map, {sc.name}")
        names += [f"abundances_{slug}.png", f"guidance_{slug}.png"]
    for sc in scenes:
        if sc.name.endswith("+10% bad bands"):
            slug = sc.name.split()[0]
            res = {m: arrays[(sc.name, m)]["band_residuals"] for m in ROBUSTNESS_METHODS}
            plots.plot_band_residuals(out_dir / f"band_residuals_{slug}.png", res, sc.bad[0], sc.name)
            names.append(f"band_residuals_{slug}.png")
    return names


def _head(cfg: dict, quick: bool, notes: list[str]) -> str:
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
    return "\n".join(head)


def run(out_dir: Path, *, quick: bool = True, resume: bool = True, data_root=None, **options) -> str:
    """The unmixing reproduction in float64 (the MU updates divide by small numbers); 64-bit mode is
    switched on for this call only, so experiments run after it keep their own precision."""
    with jax.enable_x64(True):
        return _run(Path(out_dir), quick, resume, data_root, **options)


def _run(out_dir: Path, quick: bool, resume: bool, data_root, **options) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    cells_dir = out_dir / "cells"
    cells_dir.mkdir(exist_ok=True)
    cfg = settings(quick)
    cfg.update({k: v for k, v in options.items() if k in cfg})
    root = Path(data_root) if data_root is not None else default_data_root()
    stored = cells_dir / "settings.json"
    key = dict(cfg, code=code_fingerprint(run_cell))  # the cells depend on the settings and on the code
    if resume and stored.exists() and records.read_json(stored) != records.to_builtin(key):
        raise ValueError(f"out_dir: {cells_dir} holds cells of other settings or code ({records.read_json(stored)}); "
                         "use another --out or --no-resume")
    records.write_json(stored, key)
    scenes, notes = build_scenes(cfg, root)
    cells, arrays = run_cells(scenes, cfg, cells_dir, resume)
    names = figures(scenes, arrays, cfg, out_dir)
    table = tables(scenes, cells, cfg, arrays, list(METHODS), ROBUSTNESS_METHODS, quick=quick)
    summary = _head(cfg, quick, notes) + table + "\nFigures: " + ", ".join(names) + "\n"
    (out_dir / "summary.md").write_text(summary)
    records.write_json(out_dir / "results.json", {
        "settings": cfg, "quick": quick, "data_root": None if root is None else str(root),
        "seeds": list(range(cfg["seeds"])),
        "methods": {m: kw for m, (_, kw) in METHODS.items()}, "environment": records.environment(),
        "cells": {f"{s} | {m}": v for (s, m), v in cells.items()}, "notes": notes,
    })
    return summary


def _both(key: str) -> str:
    """'default: <quick value>, <full value> with --full' (one value when both sizes share it) for a help text."""
    def show(v):
        return " ".join(f"{x:g}" for x in v) if isinstance(v, tuple) else str(v)
    quick, full = show(settings(True)[key]), show(settings(False)[key])
    return f"default: {quick}" if quick == full else f"default: {quick}, {full} with --full"


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m experiments.unmixing.run", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--full", action="store_true",
                   help="paper size: 5 seeds, full images, 1000 iterations, synthetic 100 x 100 at 20/30/40 dB "
                        "(default: quick, 3 seeds, stride-2 images, 150 iterations, synthetic 40 x 40 at 20/40 dB)")
    p.add_argument("--out", type=Path, default=Path("results/unmixing"),
                   help="output folder (results.json, summary.md, figures; finished cells under OUT/cells)")
    p.add_argument("--data-root", type=Path, default=None,
                   help="folder holding the hyperspectral scenes, searched alone (default: $JSPARSE_HSI_ROOT, "
                        "the user folder, then the bundled data)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="recompute every (scene, method) cell (default: reuse the cells saved under OUT/cells)")
    p.add_argument("--seeds", type=int, default=None, help=f"seeds per scene ({_both('seeds')})")
    p.add_argument("--max-iters", dest="max_iters", type=int, default=None,
                   help=f"iterations per solve at most ({_both('max_iters')})")
    p.add_argument("--stride", type=int, default=None,
                   help=f"spatial subsampling of the real images, every STRIDE-th row and column ({_both('stride')})")
    p.add_argument("--fractions", type=float, nargs="+", default=None,
                   help=f"fractions of bands corrupted in the outlier study, 0 included ({_both('fractions')})")
    p.add_argument("--snrs", type=float, nargs="*", default=None,
                   help=f"SNRs of the synthetic scenes in dB, none after the flag: no synthetic scenes "
                        f"({_both('snrs')})")
    p.add_argument("--init", choices=INITS, default=None,
                   help="shared start of every method: VCA-FCLS on raw, noise-whitened or outlier-screened bands "
                        f"({_both('init')})")
    return p


def main(argv: list[str] | None = None) -> str:
    a = build_parser().parse_args(argv)
    opts = {k: v for k, v in (("seeds", a.seeds), ("max_iters", a.max_iters), ("stride", a.stride), ("init", a.init),
                              ("fractions", tuple(a.fractions) if a.fractions else None),
                              ("snrs", tuple(a.snrs) if a.snrs is not None else None)) if v is not None}
    return run(a.out, quick=not a.full, resume=a.resume, data_root=a.data_root, **opts)


if __name__ == "__main__":
    print(main())
