"""The Markdown tables of the unmixing reproduction (SAD / RMSE per scene and method, the outlier-band
study and its least-squares oracle)."""
from __future__ import annotations

import numpy as np

from experiments._claims import claims
from experiments.unmixing.scenes import Scene
from jsparse.core import metrics as core_metrics
from jsparse.unmixing import datasets, metrics


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


def uncorrupted_sads(by_name: dict, arrays: dict, d: str, m: str, frac: float) -> tuple[list, list]:
    """Per seed, the SAD of method m's clean run and of its run at `frac` corrupted bands, both on
    the bands left uncorrupted in that run."""
    sc, T = by_name[f"{d} +{frac:.0%} bad bands"], by_name[d].endmembers
    clean_M, bad_M = arrays[(d, m)]["endmembers_all"], arrays[(sc.name, m)]["endmembers_all"]
    seeds = range(len(sc.bad))
    return ([_sad_on_bands(clean_M[s], T, ~sc.bad[s]) for s in seeds],
            [_sad_on_bands(bad_M[s], T, ~sc.bad[s]) for s in seeds])


def robust_rows(scenes: list[Scene], arrays: dict, cfg: dict, robust_methods: tuple) -> list[str]:
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
        for m in robust_methods:
            row, rise = [], ""
            for f in cfg["fractions"][1:]:
                c, b = uncorrupted_sads(by_name, arrays, d, m, f)
                row.append(f"{np.mean(c):.4f} / {np.mean(b):.4f} ± {np.std(b):.4f}")
                if f == 0.1:
                    rise = f"{100 * (np.mean(b) / np.mean(c) - 1):+.0f} %"
            lines.append(f"| {d} | {m} | " + " | ".join(row) + f" | {rise} |")
    return lines + [""]


FULL = "python -m experiments.unmixing.run --full --out results/unmixing"
REAL = tuple(datasets.DATASETS)  # the real scenes the paper reports


def scene_claims(base: list[str], cells: dict, methods: list, quick: bool) -> list[str]:
    """RRLbS's rank by SAD and RMSE on each real scene of the run, against the paper's claim."""
    here, missing = [], []
    for name in [n for n in base if n in REAL]:
        for metric in ("sad", "rmse"):
            vals = {m: float(np.mean(cells[(name, m)][metric])) for m in methods}
            rank = 1 + sum(v < vals["RRLbS"] for v in vals.values())
            best = min(vals, key=lambda m: vals[m])
            here.append(f"{name} {metric.upper()}: RRLbS {vals['RRLbS']:.4f}, rank {rank} of {len(methods)}"
                        + ("" if rank == 1 else f" (best {best} {vals[best]:.4f})"))
            if rank > 1:
                missing.append(f"RRLbS lowest {metric.upper()} on {name}")
    absent = [n for n in REAL if n not in base]
    if absent:
        missing.append(f"{', '.join(absent)} (not in this run: data not found; `python -m jsparse.unmixing.data "
                       f"{absent[0]}` downloads it)")
    paper = ("RRLbS has the lowest endmember SAD and abundance RMSE on Samson, Jasper Ridge and Urban against "
             "VCA-FCLS, NMF and L1/2-NMF (reference numbers unavailable: the comparison is by rank).")
    here_text = "; ".join(here) + "." if here else "no real scene in this run."
    more = " docs/unmixing.md gives the paper-size results." if missing else ""
    return claims(paper, here_text, ("; ".join(missing) + "." + more) if missing else None,
                  FULL if quick and missing else None)


def outlier_claims(scenes: list[Scene], arrays: dict, cfg: dict, robust_methods: tuple, quick: bool) -> list[str]:
    """The l2,1 error's robustness to corrupted bands at 10 %, on the bands that carry information."""
    if 0.1 not in cfg["fractions"]:
        return []
    by_name = {s.name: s for s in scenes}
    here, missing = [], []
    for d in sorted({s.name.split(" +")[0] for s in scenes if "bad bands" in s.name}):
        rises = {}
        for m in robust_methods:
            clean, bad = uncorrupted_sads(by_name, arrays, d, m, 0.1)
            rises[m] = 100 * (np.mean(bad) / np.mean(clean) - 1)
        smallest = min(rises, key=lambda m: rises[m])
        here.append(f"{d}: RRLbS {rises['RRLbS']:+.0f} % (" + ", ".join(
            f"{m} {v:+.0f} %" for m, v in rises.items() if m != "RRLbS") + ")")
        if rises["RRLbS"] > 25 or smallest != "RRLbS" and rises[smallest] < rises["RRLbS"] - 1:
            missing.append(f"RRLbS the least affected on {d}")
    paper = ("the l2,1-norm error makes RRLbS robust to corrupted bands: its estimates degrade little when some "
             "bands are outliers (no reference numbers).")
    here_text = ("SAD on the uncorrupted bands, rise from the clean run at 10 % corrupted bands: " + "; ".join(here)
                 + ". The all-band SAD rises for every method, the least-squares fit given the true abundances "
                 "included (table below), because the corrupted bands cannot be recovered.")
    return claims(paper, here_text, ("; ".join(missing) + ".") if missing else None,
                  FULL if quick and missing else None)


def tables(scenes: list[Scene], cells: dict, cfg: dict, arrays: dict, methods: list, robust_methods: tuple,
           quick: bool = True) -> str:
    """The Markdown tables of a run (`methods`: every column; `robust_methods`: the outlier-band rows)."""
    base = [s.name for s in scenes if "bad bands" not in s.name]
    lines = []
    lines += scene_claims(base, cells, methods, quick)
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
    if reals:
        lines += outlier_claims(scenes, arrays, cfg, robust_methods, quick)
    # (results.json also holds the SAD over the uncorrupted bands of each run; it is not tabulated
    # because its band set differs between fractions, so its "rise" would not be comparable.)
    for metric, title in (("sad", "SAD (all bands)"), ("rmse", "abundance RMSE")):
        lines += [f"### Outlier bands: {title} vs corrupted fraction (rise at 10 % relative to clean)", "",
                  "| data | method | " + " | ".join(f"{f:.0%}" for f in cfg["fractions"]) + " | rise at 10 % |",
                  "|---" * (len(cfg["fractions"]) + 3) + "|"]
        for d in reals:
            for m in robust_methods:
                vals, row = [], []
                for f in cfg["fractions"]:
                    key = (d if f == 0 else f"{d} +{f:.0%} bad bands", m)
                    vals.append(np.mean(cells[key][metric]))
                    row.append(_ms(cells[key][metric]))
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
        lines += robust_rows(scenes, arrays, cfg, robust_methods)
    return "\n".join(lines)
