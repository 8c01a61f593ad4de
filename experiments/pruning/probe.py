"""Why SAP(0.5,1) stalls on digits: how much weight decay each round applies.

SAP(0.5,1) with eta_r = 0, gamma = 1 removes the fraction I (the PQ Index of the remaining weights)
per round, so reaching <= 10 % in 10 rounds needs an average I of about 0.21.  The PQ Index after a
round depends on how far training moves the weights away from their (Gaussian/uniform, I ~ 0.11-0.15)
initialisation; weight decay pulls unneeded weights toward 0, which makes the distribution
heavy-tailed (larger I).  The total shrinkage of one round is exp(-wd * sum_t lr_t) (sum over the
optimizer steps of the round), the "decay budget" wd * sum_t lr_t:

* paper, CIFAR10 CNN: 200 epochs x 200 steps with a cosine lr from 0.1: 5e-4 * 0.05 * 40,000 = 1.0;
* paper, Fashion-MNIST MLP: 200 x 240 steps: 1.2;
* our quick digits MLP: 60 epochs x 22 steps (batch 64): 5e-4 * 0.05 * 1,320 = 0.033.

This probe runs SAP(0.5,1) (global, T = 10) on the digits MLP for settings that differ only in
epochs, batch size and weight decay, and reports each setting's decay budget, remaining fraction
per round, PQ Index per round and accuracy.  Checkpointed per round (resumes).  Run:
    python -m experiments.pruning.probe [--out results/pruning_probe] [--only NAME ...]
"""
from __future__ import annotations

from experiments import _env  # noqa: F401

# isort: split

import argparse
import time
from pathlib import Path

from jsparse.core import records
from jsparse.core.code_fingerprint import code_fingerprint
from jsparse.pruning import datasets, models, procedures, train

# name -> (epochs, batch, weight decay)
SETTINGS = {
    "quick-old E60 b64 wd5e-4": (60, 64, 5e-4),
    "E200 b64 wd5e-4": (200, 64, 5e-4),
    "E60 b64 wd1.5e-2 (paper budget)": (60, 64, 1.5e-2),
    "E60 b16 wd5e-3": (60, 16, 5e-3),
    "E120 b64 wd7.5e-3": (120, 64, 7.5e-3),
    "E60 b32 wd7.5e-3": (60, 32, 7.5e-3),
    "E60 b64 wd3e-2": (60, 64, 3e-2),
}


def budget(epochs: int, steps_per_epoch: int, wd: float, lr: float = 0.1) -> float:
    """wd * sum of the cosine learning rates of one round (mean lr = lr / 2)."""
    return wd * lr / 2 * epochs * steps_per_epoch


def run_setting(name, epochs, batch, wd, data, out: Path, rounds: int = 10, seed: int = 0) -> dict:
    spe = data.x_train.shape[0] // batch
    model = models.build("mlp", data.x_train.shape[1:], data.num_classes, seed=seed)
    trainer = train.Trainer(model, steps_per_round=epochs * spe, batch_size=batch, weight_decay=wd)
    tag = name.split(" (")[0].replace(" ", "_").replace(".", "p")
    code = [code_fingerprint(f) for f in (procedures.run_procedure, models.build, train.Trainer)]
    tag += "_" + records.fingerprint(code, length=8)  # checkpoints of other code are not resumed
    t0 = time.perf_counter()
    res = procedures.run_procedure(trainer, data, procedures.make_rule("sap"), method="sap", rounds=rounds,
                                   epochs=epochs, seed=seed, out_dir=out / tag, name=name)
    rows = res.records
    return {"epochs": epochs, "batch": batch, "weight_decay": wd, "steps_per_round": epochs * spe,
            "decay_budget": budget(epochs, spe, wd), "seconds": time.perf_counter() - t0,
            "remaining": [r["remaining"] for r in rows], "pqi": [r["pqi"] for r in rows],
            "test_acc": [r["test_acc"] for r in rows],
            "max_acc_drop_points": 100 * max(rows[0]["test_acc"] - r["test_acc"] for r in rows),
            "count_minus_formula_max_abs": max(abs(r["pruned"] - r["expected_pruned"]) for r in rows)}


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m experiments.pruning.probe", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("results/pruning_probe"),
                    help="output folder (probe.json, checkpoints)")
    ap.add_argument("--only", nargs="*", default=None,
                    help="names (prefixes) of settings to run (default: all of " + "; ".join(SETTINGS) + ")")
    return ap


def main(argv=None) -> None:
    a = build_parser().parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    data = datasets.digits()
    path = a.out / "probe.json"
    res = records.read_json(path) if path.exists() else {"environment": records.environment(), "settings": {}}
    for name, (e, b, wd) in SETTINGS.items():
        if a.only and not any(name.startswith(o) for o in a.only):
            continue
        res["settings"][name] = run_setting(name, e, b, wd, data, a.out / "checkpoints")
        records.write_json(path, res)
        s = res["settings"][name]
        print(f"{name}: budget {s['decay_budget']:.3f}, remaining at t=10 {100 * s['remaining'][-1]:.1f} %, "
              f"PQI {' '.join(f'{v:.3f}' for v in s['pqi'])}, acc {100 * s['test_acc'][0]:.1f} -> "
              f"{100 * s['test_acc'][-1]:.1f} (max drop {s['max_acc_drop_points']:.1f}), {s['seconds']:.0f} s",
              flush=True)


if __name__ == "__main__":
    main()
