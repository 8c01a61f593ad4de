"""Why Fig. 2's SVD-KroSBL curve *with* pruning can end above the curve without it.

Fig. 2 is one realisation (M = (14, 12, 15), K = 4, 30 dB, known σ², x = x_1 ⊗ x_2 ⊗ x_3). With
pruning, entry j of factor i is deleted once γ_i[j] < 1e-3 max γ_i. Near convergence
γ_i[j] ≈ c |x_i[j]|², so a *true* position whose |x_i[j]|² / max_j |x_i[j]|² is below 1e-3 is
deleted by the rule's own semantics, and the NMSE cannot go below the energy it carried. This
study runs SVD-KroSBL with and without pruning (150 iterations, tol = 0, as the reference's
"EM ends" marker) on many realisations of the Fig. 2 problem and records, per trial:

  * final NMSE with and without pruning;
  * `min_ratio`: the smallest |x_i[j]|² / max |x_i|² over the true positions of all factors;
  * `lost`: true positions (of the N_i-long factor supports) deleted by pruning;
  * `lost_energy`: ||x restricted to deleted positions||² / ||x||² (the NMSE floor they cause).

    python -m experiments.krosbl.prune_study [--trials 40] [--out results/krosbl_prune]
"""
from __future__ import annotations

from experiments import _env  # noqa: F401  (XLA flag before jax import)

# isort: split

import argparse
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.krosbl import trials as T
from jsparse.core import montecarlo, records
from jsparse.core.metrics import nmse
from jsparse.sbl import krosbl

CONV_M = (14, 12, 15)


def factor_energy(x: jax.Array, dims) -> list:
    """Per-factor position energies of a Kronecker-product x: ∝ |x_i[j]|² (unfolding row norms²)."""
    t = jnp.abs(x.reshape(dims)) ** 2
    return [jnp.sum(t, axis=tuple(a for a in range(len(dims)) if a != i)) for i in range(len(dims))]


def kron_vectors(vectors: list) -> jax.Array:
    """Kronecker product of 1-D vectors, flattened (last factor fastest)."""
    return functools.reduce(lambda a, b: jnp.outer(a, b).reshape(-1), vectors)


def trial(key, *, prune=1e-3, iters=150):
    p = T.problem(key, n=T.N_PAPER, m=CONV_M, k=4, snr_db=30.0, values="kron")

    def svd_krosbl(prune_rel: float):
        return krosbl(p.y, p.factors, method="svd", noise_var=p.noise_var, max_iters=iters, tol=0.0, prune=prune_rel)

    free = svd_krosbl(0.0)
    pruned = svd_krosbl(prune)
    energies = factor_energy(p.x, T.N_PAPER)
    ratios = [jnp.where(s, e / jnp.max(e), jnp.inf) for e, s in zip(energies, p.supports)]
    lost = sum(jnp.sum(s & (g == 0)) for s, g in zip(p.supports, pruned.gammas))
    kept = kron_vectors([(g > 0).astype(p.x.dtype) for g in pruned.gammas]) > 0
    lost_energy = jnp.sum(jnp.where(kept, 0.0, jnp.abs(p.x) ** 2)) / jnp.sum(jnp.abs(p.x) ** 2)
    min_ratio = jnp.min(jnp.stack([jnp.min(r) for r in ratios]))
    return {"nmse_free": nmse(free.x, p.x), "nmse_pruned": nmse(pruned.x, p.x),
            "min_ratio": min_ratio, "lost": lost, "lost_energy": lost_energy}


def run(out_dir: Path, *, trials: int = 40, prune: float = 1e-3, resume: bool = True) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with jax.enable_x64(True):
        res = montecarlo.sweep(lambda key, problem: trial(key, prune=prune), {"problem": ["fig2"]}, num_trials=trials,
                               key=2024, chunk_size=10, batch_size=1,
                               out_dir=(out_dir / "checkpoints") if resume else None, name=f"prune_{prune:g}_{trials}",
                               on_mismatch="recompute")
    a = {k: np.asarray(v).reshape(trials) for k, v in res.arrays.items()}
    below = a["min_ratio"] < prune
    summary = {
        "trials": trials, "prune": prune,
        "median_nmse_free": float(np.median(a["nmse_free"])), "median_nmse_pruned": float(np.median(a["nmse_pruned"])),
        "frac_pruned_worse_2x": float(np.mean(a["nmse_pruned"] > 2 * a["nmse_free"])),
        "frac_true_entry_below_threshold": float(np.mean(below)),
        "frac_lost_any": float(np.mean(a["lost"] > 0)),
        "median_nmse_pruned_when_none_below": float(np.median(a["nmse_pruned"][~below])) if (~below).any() else None,
        "median_nmse_free_when_none_below": float(np.median(a["nmse_free"][~below])) if (~below).any() else None,
        "corr_log_excess_vs_log_lost_energy": None,
    }
    lost = a["lost"] > 0
    if lost.sum() >= 3:
        excess = np.maximum(a["nmse_pruned"][lost] - a["nmse_free"][lost], 1e-30)
        corr = np.corrcoef(np.log(excess), np.log(a["lost_energy"][lost]))[0, 1]
        summary["corr_log_excess_vs_log_lost_energy"] = float(corr)
    out = {"summary": summary, "per_trial": {k: v.tolist() for k, v in a.items()}, "environment": records.environment(),
           "run_seconds": res.meta.get("run_seconds")}
    records.write_json(out_dir / "prune_study.json", records.to_builtin(out))
    return out


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m experiments.krosbl.prune_study", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--trials", type=int, default=40, help="realisations of the Fig. 2 problem")
    ap.add_argument("--prune", type=float, default=1e-3, help="SVD-KroSBL relative pruning threshold")
    ap.add_argument("--out", default="results/krosbl_prune", help="output folder (prune_study.json)")
    return ap


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    out = run(Path(a.out), trials=a.trials, prune=a.prune)
    for k, v in out["summary"].items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
