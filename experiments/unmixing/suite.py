"""Robustness suite: every NMF-family method on Samson and Jasper Ridge with bad bands of every kind of
`jsparse.unmixing.synthetic.CORRUPTION_SUITE`, scattered and contiguous, at several fractions of bands.

    python -m experiments.unmixing.suite --out results/unmixing_suite              # 10 % of bands, 3 seeds
    python -m experiments.unmixing.suite --fractions 0.05 0.1 0.2 --seeds 5 --out ...
    python -m experiments.unmixing.suite --first-seed 3 --out results/unmixing_suite_seeds3to5

Per seed s: the bad bands are drawn with PRNGKey(2000 + s), the start with key s. Every method starts
from the same point: the library's default start (VCA-FCLS on outlier-screened bands) computed on
the image it is given, so the baselines get the same robust start as RRLbS. Reported per method:
SAD on the uncorrupted bands (endmembers matched on those bands) of the clean run and of the
corrupted run, its rise, and the abundance RMSE of both runs. Methods run through their solver
objects, because the functions refuse the negative values of the unclipped kind.
"""
from __future__ import annotations

from experiments import _env  # noqa: F401  (XLA flags before jax)

# isort: split
import argparse
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.unmixing.scenes import _subsample
from jsparse import unmixing as U
from jsparse.core import records
from jsparse.unmixing import metrics, synthetic
from jsparse.unmixing.mu_solver import solve_mu

METHODS = {"NMF": U.NMF, "L1/2-NMF": U.L12NMF, "l21-NMF": U.L21NMF, "RRLbS": U.RRLbS}


def _clean_band_sad(M, T, good) -> float:
    R = T.shape[1]
    ones = np.full((R, 1), 1.0 / R)
    return metrics.evaluate(M[good], ones, T[good], ones).mean_sad


def _run_all(Y, R, seed, cfg) -> dict:
    """{method: (M, A)} from the shared start of `seed` on image Y (L, N), possibly with negative values."""
    Yj = jnp.asarray(Y)
    M0, A0 = U.initial_point(jnp.maximum(Yj, 0.0), R, seed, init=cfg["init"])  # the start needs Y >= 0
    out = {}
    for name, cls in METHODS.items():
        res = solve_mu(cls(R, max_iters=cfg["max_iters"], tol=cfg["tol"]), Yj, None, M0, A0)
        out[name] = (np.asarray(res.endmembers), np.asarray(res.abundances))
    return out


def run_scene(name: str, cfg: dict) -> list[dict]:
    """Rows {scene, corruption, layout, fraction, method, seed, sad_clean, sad_bad, rmse_clean, rmse_bad}."""
    d = U.load_dataset(name)
    Y, A_true, shape = _subsample(d, cfg["stride"])
    Y = np.asarray(Y)
    R = d.endmembers.shape[1]
    seeds = range(cfg["first_seed"], cfg["first_seed"] + cfg["seeds"])
    clean = {s: _run_all(Y, R, s, cfg) for s in seeds}
    rows = []
    for label, kind, strength in synthetic.CORRUPTION_SUITE:
        for layout in cfg["layouts"]:
            for frac in cfg["fractions"]:
                for s in seeds:
                    Yc, bad = synthetic.corrupt_bands(jax.random.PRNGKey(2000 + s), jnp.asarray(Y), frac, shape=shape,
                                                      kind=kind, strength=strength, layout=layout)
                    good = ~np.asarray(bad)
                    runs = _run_all(np.asarray(Yc), R, s, cfg)
                    for m, (M, A) in runs.items():
                        Mc, Ac = clean[s][m]
                        rows.append(dict(
                            scene=name, corruption=label, layout=layout, fraction=frac, method=m, seed=s,
                            sad_clean=_clean_band_sad(Mc, d.endmembers, good),
                            sad_bad=_clean_band_sad(M, d.endmembers, good),
                            rmse_clean=metrics.evaluate(Mc, Ac, d.endmembers, A_true).mean_rmse,
                            rmse_bad=metrics.evaluate(M, A, d.endmembers, A_true).mean_rmse))
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: per (scene, corruption, layout, fraction) the clean-band SAD rise and RMSE of every method."""
    lines = ["| scene | corruption | layout | bands | " + " | ".join(f"{m} SAD rise (RMSE)" for m in METHODS) + " |",
             "|---" * (4 + len(METHODS)) + "|"]
    keys = sorted({(r["scene"], r["corruption"], r["layout"], r["fraction"]) for r in rows},
                  key=lambda k: (k[0], [c[0] for c in synthetic.CORRUPTION_SUITE].index(k[1]), k[2], k[3]))
    for key in keys:
        cells = []
        for m in METHODS:
            sel = [r for r in rows if (r["scene"], r["corruption"], r["layout"], r["fraction"]) == key
                   and r["method"] == m]
            clean = np.mean([r["sad_clean"] for r in sel])
            bad = np.mean([r["sad_bad"] for r in sel])
            cells.append(f"{100 * (bad / clean - 1):+.0f} % ({np.mean([r['rmse_bad'] for r in sel]):.3f})")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]:.0%} | " + " | ".join(cells) + " |")
    base = ["", "Clean images (no bad bands): mean SAD over all bands is in the rows' clean runs; clean RMSE:", ""]
    for sc in sorted({r["scene"] for r in rows}):
        rm = {m: np.mean([r["rmse_clean"] for r in rows if r["scene"] == sc and r["method"] == m]) for m in METHODS}
        base.append(f"- {sc}: " + ", ".join(f"{m} {v:.3f}" for m, v in rm.items()))
    return "\n".join(lines + base) + "\n"


# The suite's settings; the command line shows and overrides these (one place for both).
DEFAULTS: dict[str, Any] = dict(seeds=3, first_seed=0, stride=2, max_iters=300, tol=1e-6, fractions=(0.1,),
                                layouts=synthetic.LAYOUTS, scenes=("samson", "jasper"), init="vca_screened")


def run(out_dir: Path, **options) -> str:
    cfg: dict[str, Any] = dict(DEFAULTS)
    cfg.update({k: v for k, v in options.items() if v is not None})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with jax.enable_x64(True):
        rows = [r for sc in cfg["scenes"] for r in run_scene(sc, cfg)]
    head = (f"Robustness suite ({cfg['seeds']} seeds from {cfg['first_seed']}, stride {cfg['stride']}, "
            f"<= {cfg['max_iters']} iterations, "
            f"start {cfg['init']}, float64, {time.perf_counter() - t0:.0f} s). Rise = mean clean-band SAD of the "
            "corrupted run / that of the clean run on the same bands - 1; RMSE of the corrupted run.\n\n")
    summary = head + table(rows)
    (out_dir / "summary.md").write_text(summary)
    records.write_json(out_dir / "results.json", {"settings": cfg, "rows": rows,
                                                  "environment": records.environment()})
    return summary


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter
    from jsparse.unmixing.start import INITS

    p = argparse.ArgumentParser(prog="python -m experiments.unmixing.suite", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--out", type=Path, default=Path("results/unmixing_suite"),
                   help="output folder (results.json with one row per run, summary.md with the table)")
    p.add_argument("--seeds", type=int, default=DEFAULTS["seeds"],
                   help="seeds per (scene, corruption, layout, fraction)")
    p.add_argument("--first-seed", dest="first_seed", type=int, default=DEFAULTS["first_seed"],
                   help="first seed s: the start uses key s, the bad bands PRNGKey(2000 + s)")
    p.add_argument("--stride", type=int, default=DEFAULTS["stride"],
                   help="spatial subsampling of the images, every STRIDE-th row and column")
    p.add_argument("--max-iters", dest="max_iters", type=int, default=DEFAULTS["max_iters"],
                   help="iterations per solve at most")
    p.add_argument("--fractions", type=float, nargs="+", default=list(DEFAULTS["fractions"]),
                   help="fractions of bands corrupted")
    p.add_argument("--scenes", nargs="+", default=list(DEFAULTS["scenes"]),
                   help="scenes by jsparse.unmixing.load_dataset name")
    p.add_argument("--init", choices=INITS, default=DEFAULTS["init"],
                   help="shared start of every method (jsparse.unmixing.initial_point's init)")
    return p


def main(argv: list[str] | None = None) -> str:
    a = build_parser().parse_args(argv)
    return run(a.out, seeds=a.seeds, first_seed=a.first_seed, stride=a.stride, max_iters=a.max_iters, init=a.init,
               fractions=tuple(a.fractions) if a.fractions else None, scenes=tuple(a.scenes) if a.scenes else None)


if __name__ == "__main__":
    print(main())
