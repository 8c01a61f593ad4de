"""Diao et al. (ICLR 2023): SAP vs lottery ticket vs one-shot, with the PQ Index per round.

Methods (global scope): SAP(p=0.5, q=1), SAP(p=1, q=2), lottery ticket (P = 0.2, rewind to
theta_0) and one-shot (P = 0.2 of the remaining, ranked on the round-0 dense model).
Quick size: scikit-learn digits (8x8, no download) with the paper's MLP (T = 10, E = 60, weight
decay 1.5e-2 so that a round's weight-decay budget matches the paper's) and a 4x narrower CNN
(T = 8, E = 5).  Full size: the paper's T = 30, E = 200, batch 250 on `--dataset
fashionmnist|cifar10 --data-dir DIR` (or digits).  Each run is plotted against its own
remaining-weight fraction (the reference plotting script pairs some panels across runs).
"""
from __future__ import annotations

from experiments import _env  # noqa: F401

# isort: split

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from jsparse.core import records
from jsparse.core.code_fingerprint import code_fingerprint
from jsparse.pruning import datasets, models, procedures, train

METHODS: dict[str, tuple[str, dict[str, Any]]] = {  # label -> (procedure, rule options)
    "SAP(0.5,1)": ("sap", dict(p=0.5, q=1.0)),
    "SAP(1,2)": ("sap", dict(p=1.0, q=2.0)),
    "LT": ("lt", dict(fraction=0.2)),
    "OS": ("os", dict(fraction=0.2)),
}
# Paper, CIFAR10 CNN global scope, Fig. 2 (read by eye): percent remaining at t = 1..5.
PAPER_REMAINING = {"SAP(0.5,1)": [69, 49, 36, 26, 20], "LT": [80, 64, 51, 41, 33], "OS": [80, 64, 51, 41, 33],
                   "SAP(1,2)": [23, 8, None, None, None]}


def settings(quick: bool, dataset: str) -> dict[str, Any]:
    if quick:
        # MLP: weight decay 1.5e-2 gives one round the paper's weight-decay budget
        # wd * sum(lr) ~ 1.0 (CIFAR10: 5e-4 * 0.05 * 200 epochs * 200 steps) in 60 short epochs
        # (5e-4 here gives 0.033, and SAP stalls at 45 % remaining: see probe.py and docs).
        # The CNN's 55 steps per round cannot be matched sensibly; it keeps the paper's 5e-4.
        return {"rounds": 10, "seed": 0, "models": {
            "mlp": {"epochs": 60, "batch": 64, "kwargs": {}, "weight_decay": 1.5e-2},
            "cnn": {"epochs": 5, "batch": 128, "kwargs": {"widths": (16, 32, 64, 128)}, "rounds": 8}}}
    small = dataset in ("digits", "fashionmnist")
    return {"rounds": 30, "seed": 0, "models": {
        "mlp": {"epochs": 200, "batch": 250, "kwargs": {}},
        "cnn": {"epochs": 200, "batch": 250, "kwargs": {}},
        **({} if small else {"resnet18": {"epochs": 200, "batch": 250, "kwargs": {}, "rounds": 15}})}}


def _pqi_pattern(pqi: list[float], tol: float = 0.005) -> str:
    """Describe the PQI trajectory in the paper's terms (decrease / increase / decrease)."""
    p = np.asarray(pqi)
    i_min = int(np.argmin(p))
    if i_min == len(p) - 1 or p[i_min:].max() - p[i_min] < tol:
        return "decreases throughout (regularisation phase only)"
    i_max = i_min + int(np.argmax(p[i_min:]))
    if i_max < len(p) - 1 and p[i_max] - p[i_max:].min() > tol:
        return f"decreases to t={i_min}, rises to t={i_max}, then decreases (the paper's full pattern)"
    return f"decreases to t={i_min}, then rises (regularisation then compression)"


def _plots(out_dir: Path, model: str, runs: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for label, rows in runs.items():
        t = [r["round"] for r in rows]
        axes[0].semilogy(t, [100 * r["remaining"] for r in rows], "o-", label=label)
        axes[1].plot(t, [100 * r["test_acc"] for r in rows], "o-", label=label)
        axes[2].plot(t, [100 * r["pruned_acc"] for r in rows], "o-", label=label)
        axes[3].plot(t, [r["pqi"] for r in rows], "o-", label=label)
    titles = ["% weights remaining", "retrained test accuracy (%)", "pruned (not retrained) accuracy (%)",
              "PQ Index (p=0.5, q=1)"]
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("round t")
    axes[0].legend()
    fig.tight_layout()
    files.append(f"rounds_{model}.png")
    fig.savefig(out_dir / files[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, rows in runs.items():  # each run against its OWN remaining fraction
        ax.semilogx([100 * r["remaining"] for r in rows], [100 * r["test_acc"] for r in rows], "o-", label=label)
    ax.invert_xaxis()
    ax.set_xlabel("% weights remaining (own run)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{model}: accuracy vs remaining weights")
    ax.legend()
    fig.tight_layout()
    files.append(f"acc_vs_remaining_{model}.png")
    fig.savefig(out_dir / files[-1], dpi=110)
    plt.close(fig)

    rows = runs["SAP(0.5,1)"]
    n = len(rows[0]["remaining_layers"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for i in sorted({0, n // 2, n - 1}):
        ax.semilogy([r["round"] for r in rows], [100 * max(r["remaining_layers"][i], 1e-4) for r in rows], "o-",
                    label=f"layer {i}")
    ax.set_title(f"{model}: SAP(0.5,1) % remaining per layer")
    ax.set_xlabel("round t")
    ax.legend()
    fig.tight_layout()
    files.append(f"layers_{model}.png")
    fig.savefig(out_dir / files[-1], dpi=110)
    plt.close(fig)
    return files


def _target(rows: list[dict]) -> dict:
    dense = rows[0]["test_acc"]
    within = [r for r in rows[1:11] if r["remaining"] <= 0.10]
    mism = [abs(r["pruned"] - r["expected_pruned"]) for r in rows]
    return {
        "dense_acc": dense, "t_check": min(10, len(rows) - 1),
        "remaining_at_t10": rows[min(10, len(rows) - 1)]["remaining"],
        "reached_10pct_within_10_rounds": bool(within),
        "max_acc_drop_points_t_le_10": 100 * max(dense - r["test_acc"] for r in rows[:11]),
        "pruned_count_minus_formula_max_abs": max(mism), "rounds_with_count_mismatch": int(sum(m > 0 for m in mism)),
        # with p=0.5, q=1, eta=0, gamma=1 the pruned fraction is the PQ Index itself (up to 1/d rounding)
        "pruned_fraction_minus_pqi_max_abs": max(abs(r["pruned_fraction"] - r["sap_index"]) for r in rows),
        "pqi": [r["pqi"] for r in rows], "pqi_pattern": _pqi_pattern([r["pqi"] for r in rows]),
    }


def run(out_dir: Path, *, quick: bool = True, resume: bool = True, dataset: str = "digits", data_dir=None,
        **options) -> str:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = settings(quick, dataset)
    override: dict[str, Any] = {k: int(options[k]) for k in ("rounds", "epochs") if options.get(k)}
    cfg["override"] = override
    data = datasets.load(dataset, data_dir)
    results = {"settings": {**cfg, "dataset": dataset, "quick": quick, "scope": "global", "beta": 0.9,
                            "optimizer": "clip 1.0 + masked(wd 5e-4 + SGD Nesterov lr 0.1 m 0.9, cosine per round)"},
               "environment": records.environment(), "runs": {}, "timing_s": {}}
    lines = []
    code = [code_fingerprint(f) for f in (procedures.run_procedure, models.build, train.Trainer, datasets.load)]
    for model_name, mc in cfg["models"].items():
        epochs = override.get("epochs", mc["epochs"])
        rounds = override.get("rounds", mc.get("rounds", cfg["rounds"]))
        spe = data.x_train.shape[0] // mc["batch"]
        wd = float(options["weight_decay"]) if options.get("weight_decay") is not None else mc.get("weight_decay", 5e-4)
        budget = wd * 0.1 / 2 * epochs * spe  # wd * sum of the cosine learning rates of one round
        mc.update(weight_decay=wd, decay_budget=budget)
        model = models.build(model_name, data.x_train.shape[1:], data.num_classes, seed=cfg["seed"], **mc["kwargs"])
        trainer = train.Trainer(model, steps_per_round=epochs * spe, batch_size=mc["batch"], augment=data.augment,
                                weight_decay=wd)
        runs = {}
        for label, (method, kw) in METHODS.items():
            start = time.perf_counter()
            rule = procedures.make_rule(method, **kw)
            tag = f"{model_name}_{label.replace('(', '_').replace(')', '').replace(',', '_')}_wd{wd:g}"
            # The checkpoint folder is keyed by everything the run depends on, code included.
            key = records.fingerprint(dict(dataset=dataset, model=mc, method=method, kw=kw, code=code), length=8)
            res = procedures.run_procedure(trainer, data, rule, method=method, rounds=rounds, epochs=epochs,
                                           seed=cfg["seed"], out_dir=out_dir / "checkpoints" / f"{tag}_{key}",
                                           resume=resume, name=f"{model_name} {label}")
            runs[label] = res.records
            results["timing_s"][tag] = time.perf_counter() - start
        results["runs"][model_name] = runs
        results.setdefault("plots", []).extend(_plots(out_dir, model_name, runs))
        sap = _target(runs["SAP(0.5,1)"])
        results.setdefault("targets", {})[model_name] = sap
        lines += [f"### {dataset} / {model_name} (T = {rounds}, E = {epochs}, batch {mc['batch']}, "
                  f"weight decay {wd:g}, decay budget wd*sum(lr) = {budget:.3f} per round; paper CIFAR10: 1.0; "
                  "global scope)", "",
                  "| method | dense acc | % remaining t=1..5 (ours) | paper CIFAR10-CNN t=1..5 | % remaining at T "
                  "| acc at T | pruned acc at T | PQI t=0 -> min -> T |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, rows in runs.items():
            rem = ", ".join(f"{100 * r['remaining']:.1f}" for r in rows[1:6])
            paper = ", ".join("-" if v is None else str(v) for v in PAPER_REMAINING[label])
            pq = [r["pqi"] for r in rows]
            lines.append(f"| {label} | {100 * rows[0]['test_acc']:.1f} | {rem} | {paper} "
                         f"| {100 * rows[-1]['remaining']:.2f} | {100 * rows[-1]['test_acc']:.1f} "
                         f"| {100 * rows[-1]['pruned_acc']:.1f} | {pq[0]:.3f} -> {min(pq):.3f} -> {pq[-1]:.3f} |")
        lines += ["", f"SAP(0.5,1) against the paper's claim ({model_name}): remaining at t={sap['t_check']} = "
                  f"{100 * sap['remaining_at_t10']:.1f} % "
                  f"(target <= 10 %: {'reached' if sap['reached_10pct_within_10_rounds'] else 'NOT reached'}); "
                  f"max accuracy drop vs dense over t <= {sap['t_check']} = "
                  f"{sap['max_acc_drop_points_t_le_10']:.2f} points; "
                  f"pruned count vs PQI formula: max |diff| = {sap['pruned_count_minus_formula_max_abs']} "
                  f"({sap['rounds_with_count_mismatch']} of {len(sap['pqi'])} rounds differ), "
                  f"max |pruned fraction - PQI| = {sap['pruned_fraction_minus_pqi_max_abs']:.1e}; "
                  f"PQI {', '.join(f'{v:.3f}' for v in sap['pqi'])} — {sap['pqi_pattern']}.", ""]
    lines += ["Paper (CIFAR10 CNN, 200 epochs/round): dense PQI 0.31 falls to ~0.20 by t ~ 8-10 then rises "
              "(SAP(0.5,1) and LT); SAP(1,2) collapses; LT ~82 % and SAP(0.5,1) ~77 % accuracy at t = 30."]
    summary = "\n".join(lines) + "\n"
    records.write_json(out_dir / "results.json", results)
    (out_dir / "summary.md").write_text(summary)
    return summary


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m experiments.pruning.run", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--full", action="store_true", help="paper size (T=30, E=200, batch 250; default: quick)")
    ap.add_argument("--out", type=Path, default=Path("results/pruning"), help="output folder")
    ap.add_argument("--dataset", default="digits",
                    choices=["digits", "fashionmnist", "cifar10", "cifar100", "tinyimagenet"],
                    help="digits ships with scikit-learn; the others are read from --data-dir")
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="folder holding the dataset files (default: none; digits needs none)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="pruning rounds T (default: quick 10, 8 for the CNN; full 30, 15 for ResNet18)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs per round E (default: quick 60, 5 for the CNN; full 200)")
    ap.add_argument("--weight-decay", type=float, default=None,
                    help="override every model's weight decay (default: quick 1.5e-2, 5e-4 for the CNN; full 5e-4)")
    ap.add_argument("--no-resume", dest="resume", action="store_false",
                    help="ignore saved checkpoints and start over (default: resume)")
    return ap


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    print(run(a.out, quick=not a.full, resume=a.resume, dataset=a.dataset, data_dir=a.data_dir,
              rounds=a.rounds, epochs=a.epochs, weight_decay=a.weight_decay))


if __name__ == "__main__":
    main()
