"""Iterative prune-rewind-retrain procedures: SAP, lottery ticket (LT) and one-shot (OS).

For t = 0..T (T+1 trainings, as the reference):
  1. rewind: params <- theta_0 * m_t (biases/BN parameters back to theta_0; BN running
     statistics carry over, as in the reference); fresh optimizer holding m_t;
  2. train E epochs with masked gradients and updates; evaluate on the test set;
  3. record remaining fraction (global, per layer), accuracy, loss, PQ Index (p,q) = (0.5,1)
     and (1,2), global and per layer;
  4. prune: SAP and LT prune the model just trained; OS prunes the round-0 (dense) trained
     model restricted to m_t.  Record the pruned (not retrained) accuracy under m_{t+1}.
Each round writes `round_XXX.npz` (trained params, batch stats, next masks) and then
`records.json`; a killed run restarts at the first round without a record and never redoes a
finished one. Within a round the trainer's state is saved after every epoch (`Trainer.fit`,
folder `round_XXX_partial`, removed when the round is recorded), so a kill mid-round loses at
most one epoch and the resumed run is bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jsparse.core import records as rec
from jsparse.pruning.pq_index import default_filter, pq_index, pq_index_per_layer
from jsparse.pruning.rules import SAP, Magnitude, apply_masks, init_masks, remaining
from jsparse.pruning.train import CHECKPOINT_FILE

__all__ = ["METHODS", "make_rule", "ProcedureResult", "run_procedure", "sap_expected_count"]

METHODS = ("sap", "lt", "os")


def make_rule(method: str, *, p: float = 0.5, q: float = 1.0, eta_r: float = 0.0, gamma: float = 1.0,
              beta: float = 0.9, fraction: float = 0.2, scope: str = "global"):
    """The pruning rule of a method: SAP(p, q, eta_r, gamma, beta) or Magnitude(fraction) for LT/OS."""
    if method == "sap":
        return SAP(p=p, q=q, eta_r=eta_r, gamma=gamma, beta=beta, scope=scope)
    if method in ("lt", "os"):
        return Magnitude(fraction=fraction, scope=scope)
    raise ValueError(f"method: expected one of {METHODS}, got {method!r}")


def sap_expected_count(index: float, d: int, rule: SAP) -> int:
    """SAP's prune count from the PQ-Index formula, in float64 on the host (for checking)."""
    if d == 0:
        return 0
    p, q = rule.p, rule.q
    r = math.ceil(d * (1 + rule.eta_r) ** (-q / (q - p)) * (1 - index) ** (q * p / (q - p)))
    return math.floor(min(max(rule.gamma * (d - r), 0.0), rule.beta * d))


class ProcedureResult(NamedTuple):
    records: list[dict]  # one dict per round
    params: Any  # trained parameters of the last round
    masks: Any  # masks after the last pruning step
    computed: list[int]  # rounds trained by this call (the others were loaded from checkpoints)


def _layer_names(params) -> list[str]:
    return [jax.tree_util.keystr(p) for p, x in jax.tree_util.tree_leaves_with_path(params) if default_filter(p, x)]


def _selected(tree_like, params) -> list:
    flat = jax.tree_util.tree_leaves_with_path(params)
    leaves = jax.tree_util.tree_leaves(tree_like, is_leaf=lambda x: x is None)
    return [v for (p, x), v in zip(flat, leaves) if default_filter(p, x)]


def _round_record(t, trainer, data, params, bs, masks, new_masks, info, rule, train_loss) -> dict:
    acc, loss = trainer.evaluate(params, bs, data.x_test, data.y_test)
    pacc, _ = trainer.evaluate(apply_masks(params, new_masks), bs, data.x_test, data.y_test)
    frac, layers = remaining(masks, params)
    frac_next, _ = remaining(new_masks, params)
    kw: dict[str, Any] = {"mask": masks, "filter": default_filter}
    row = {
        "round": t, "remaining": float(frac), "remaining_layers": [float(v) for v in layers],
        "test_acc": float(acc), "test_loss": float(loss), "train_loss": float(train_loss),
        "pqi": float(pq_index(params, p=0.5, q=1.0, **kw)), "pqi_12": float(pq_index(params, p=1.0, q=2.0, **kw)),
        "pqi_layers": [float(v) for v in _selected(pq_index_per_layer(params, **kw), params)],
        "pruned_acc": float(pacc), "remaining_next": float(frac_next),
    }
    if rule.scope == "global":
        d, count = int(info.d), int(info.count)
        row.update(d=d, pruned=count, pruned_fraction=count / max(d, 1))
        if isinstance(rule, SAP):
            row.update(sap_index=float(info.index), sap_r=int(info.r),
                       expected_pruned=sap_expected_count(float(info.index), d, rule))
    return row


def _describe(rule) -> str:
    """The rule as in its repr, with functions named by module and name: the same text in every
    process (a function's repr holds its memory address, so a restarted run never matched)."""
    if not dataclasses.is_dataclass(rule):
        return repr(rule)
    parts = []
    for f in dataclasses.fields(rule):
        v = getattr(rule, f.name)
        text = f"{v.__module__}.{v.__qualname__}" if callable(v) and hasattr(v, "__qualname__") else repr(v)
        parts.append(f"{f.name}={text}")
    return f"{type(rule).__name__}({', '.join(parts)})"


def _remove_partial(folder: Path) -> None:
    """Drop a finished round's epoch checkpoint (the round's record and arrays are written)."""
    (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def run_procedure(trainer, data, rule, *, method: str, rounds: int, epochs: int, seed: int = 0,
                  out_dir: str | Path | None = None, resume: bool = True, stop_after: int | None = None,
                  name: str = "") -> ProcedureResult:
    """Run rounds 0..`rounds` of `method` ("sap" | "lt" | "os") with `rule` on `data`.

    trainer: a `train.Trainer` (its initial parameters are theta_0); data: a `datasets.Dataset`.
    out_dir: checkpoint folder (resumes from it when `resume`); stop_after: stop after that round
    (used to test resumption).  Returns the per-round records and the final params/masks.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if rounds < 0 or epochs < 1:
        raise ValueError(f"rounds/epochs: expected rounds >= 0 and epochs >= 1, got {rounds}, {epochs}")
    theta0, bs = trainer.init_params, trainer.init_batch_stats
    masks = init_masks(theta0)
    config = {"method": method, "rule": _describe(rule), "rounds": rounds, "epochs": epochs, "seed": seed,
              "layers": _layer_names(theta0)}
    out = Path(out_dir) if out_dir is not None else None
    rows: list[dict] = []
    params, dense = theta0, None
    template = {"params": theta0, "batch_stats": bs, "masks": masks}
    if out is not None and resume and (out / "records.json").exists():
        saved = rec.read_json(out / "records.json")
        if saved["config"] != config:
            raise ValueError(f"out_dir: {out} holds a run with different settings; use another folder or resume=False")
        rows = saved["rounds"]
        if rows:
            ck = rec.load_pytree(out / f"round_{len(rows) - 1:03d}.npz", template)
            params, bs, masks = ck["params"], ck["batch_stats"], ck["masks"]
            if method == "os":
                dense = rec.load_pytree(out / "round_000.npz", template)["params"]
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    key = jax.random.PRNGKey(seed)
    computed = []
    for t in range(len(rows), rounds + 1):
        state = trainer.init_state(apply_masks(theta0, masks), bs, masks)
        partial = None if out is None else out / f"round_{t:03d}_partial"
        state, loss = trainer.fit(state, x, y, key, epochs=epochs, key_offset=t * 100_003, checkpoint_dir=partial,
                                  resume=resume, desc=f"{name or method} round {t}")
        params, bs = state.params, state.batch_stats
        if t == 0:
            dense = params
        source = dense if method == "os" else params
        info = rule.prune_with_info(source, masks)
        rows.append(_round_record(t, trainer, data, params, bs, masks, info.masks, info, rule, loss))
        masks = info.masks
        computed.append(t)
        if out is not None:
            rec.save_pytree(out / f"round_{t:03d}.npz", {"params": params, "batch_stats": bs, "masks": masks})
            rec.write_json(out / "records.json", {"config": config, "rounds": rows})
            _remove_partial(out / f"round_{t:03d}_partial")
        if stop_after is not None and t >= stop_after:
            break
    return ProcedureResult(rows, params, masks, computed)
