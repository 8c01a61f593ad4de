"""The paper's claim about SAEs on language-model activations, set against one sae_lm run."""
from __future__ import annotations

from experiments._claims import claims

FULL = "python -m experiments.sae_lm.run --full --out results"
PAPER = ("on LLM activations (Qwen2.5 / Pythia; a figure, no table) GBA's reconstruction-vs-sparsity frontier is "
         "comparable to TopK's and far better than ReLU + L1's and BA's, with few dead latents.")


def frontier_claims(agg: dict, l0_targets, quick: bool) -> list[str]:
    """`agg`: (method, L0 target) -> {"l0", "fvu", "dead_fraction"} of a run; one clause per target."""
    here, missing = [], []
    for t in l0_targets:
        g = agg.get(("gba", t))
        if g is None:
            continue
        others = {m: agg[(m, t)] for m in ("topk", "ba", "relu_l1") if (m, t) in agg}
        here.append(f"L0 target {t}: GBA FVU {g['fvu']:.3f} at L0 {g['l0']:.1f}, dead {g['dead_fraction']:.3f}"
                    + "".join(f"; {m} {v['fvu']:.3f} at L0 {v['l0']:.1f}, dead {v['dead_fraction']:.3f}"
                              for m, v in others.items()))
        topk = others.get("topk")
        if topk is not None and g["fvu"] > 1.1 * topk["fvu"]:
            missing.append(f"GBA comparable to TopK at L0 target {t} (FVU {g['fvu']:.3f} vs {topk['fvu']:.3f})")
        for m in ("ba", "relu_l1"):
            if m in others and others[m]["fvu"] < g["fvu"]:
                missing.append(f"GBA ahead of {m} at L0 target {t} (FVU {g['fvu']:.3f} vs {others[m]['fvu']:.3f})")
        if topk is not None and g["dead_fraction"] > topk["dead_fraction"]:
            missing.append(f"fewer dead latents than TopK at L0 target {t} ({g['dead_fraction']:.3f} vs "
                           f"{topk['dead_fraction']:.3f})")
    missing.append("the paper's models: this run uses all-MiniLM-L6-v2 layer 3 offline, so only the shape of the "
                   "claim is checked")
    return claims(PAPER, ("; ".join(here) + ".") if here else "no GBA run.", "; ".join(missing) + ".",
                  FULL if quick else None)
