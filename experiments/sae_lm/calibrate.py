"""GBA at a chosen L0: group target frequencies from a desired L0, and a pilot-run calibration.

GBA has no L0 knob. If every latent fired exactly at its group's target frequency p_k, the mean
number of active latents per token would be

    E[L0] = width * mean_k(p_k)                                    (groups of equal size)

so `gba_targets(l0, width)` returns K geometric targets spanning `decades` decades whose mean is
l0 / width. The paper's rule only pushes an over-active latent's bias down (p_hat > p_k) and only
raises a latent that did not fire at all in a window, so a latent that overshoots below its target
stays there: width * mean(p_k) is an upper bound on the realised L0, and on MiniLM activations the
realised L0 came out 2-10x lower (docs/sae_lm.md). `match_l0` therefore calibrates one
multiplicative factor on the targets with short feedback rounds (the same settings as the final
run), like the sweep over k / lambda the other methods would need: factor *= (want / got) in the
first round, then a secant step in log-log coordinates.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

__all__ = ["gba_targets", "expected_l0", "match_l0"]


def gba_targets(l0: float, width: int, *, groups: int = 10, decades: float = 2.0, factor: float = 1.0) -> list[float]:
    """K strictly decreasing geometric targets, highest/lowest = 10**decades, with
    width * mean(targets) = factor * l0.

    Raises ValueError (naming the argument) when l0, width, groups, decades or factor is not
    positive, or when the highest target would reach 1 (l0 too large for this width/range)."""
    if not l0 > 0:
        raise ValueError(f"l0: must be > 0, got {l0}")
    if int(width) < 1 or int(groups) < 1 or int(groups) > int(width):
        raise ValueError(f"width/groups: need 1 <= groups <= width, got width={width}, groups={groups}")
    if not decades > 0 and groups > 1:
        raise ValueError(f"decades: must be > 0, got {decades}")
    if not factor > 0:
        raise ValueError(f"factor: must be > 0, got {factor}")
    shape = np.geomspace(1.0, 10.0 ** (-decades), groups) if groups > 1 else np.ones(1)
    t = shape * (factor * l0 / width) / shape.mean()
    if t[0] >= 1:
        raise ValueError(f"l0: {factor * l0:g} active latents of {width} needs a highest target {t[0]:.3f} >= 1 "
                         f"over {decades} decades; use a wider SAE or fewer decades")
    return t.tolist()


def expected_l0(targets, width: int) -> float:
    """width * mean of the per-latent targets for K contiguous near-equal groups (gba.group_ids)."""
    t = np.asarray(targets, np.float64)
    gid = np.arange(int(width)) * t.size // int(width)
    return float(np.sum(t[gid]))


def match_l0(run: Callable[[float], float], want: float, *, factor: float = 1.0, rounds: int = 3,
             rtol: float = 0.15, max_factor: float | None = None) -> dict:
    """Find a target factor whose run gives L0 within rtol of `want`.

    run(factor) -> measured L0 (> 0) of a training run with gba_targets(want, ..., factor=factor).
    Round 1 uses `factor`; round 2 scales it by want / got (L0 proportional to the factor);
    later rounds take the secant of log L0 against log factor through the last two rounds (slope
    clipped to [0.25, 4]). Stops early once within rtol. max_factor caps the factor (e.g. where
    the highest target would reach 1). Returns dict(factor, l0, rounds=[(factor, l0), ...],
    matched) for the round whose L0 is closest to want in log ratio."""
    if not want > 0 or rounds < 1:
        raise ValueError(f"want/rounds: need want > 0 and rounds >= 1, got {want}, {rounds}")
    hist: list[tuple[float, float]] = []
    f = float(factor)
    for r in range(rounds):
        got = float(run(f))
        hist.append((f, got))
        if abs(math.log(max(got, 1e-9) / want)) <= math.log1p(rtol):
            break
        if got <= 0:
            nxt = f * 4.0
        elif len(hist) < 2 or hist[-1][0] == hist[-2][0] or hist[-2][1] <= 0:
            nxt = f * want / got
        else:
            (f0, l0_), (f1, l1_) = hist[-2], hist[-1]
            slope = (math.log(l1_) - math.log(l0_)) / (math.log(f1) - math.log(f0))
            slope = min(max(slope, 0.25), 4.0) if math.isfinite(slope) else 1.0
            nxt = f1 * math.exp((math.log(want) - math.log(l1_)) / slope)
        f = min(nxt, max_factor) if max_factor is not None else nxt
    best = min(hist, key=lambda fl: abs(math.log(max(fl[1], 1e-9) / want)))
    return dict(factor=best[0], l0=best[1], rounds=hist,
                matched=abs(math.log(max(best[1], 1e-9) / want)) <= math.log1p(rtol))
