"""GBA targets from a desired L0 (closed form) and the pilot-run L0 calibration (synthetic runs)."""
import math

import numpy as np
import pytest

from experiments.sae_lm.calibrate import expected_l0, gba_targets, match_l0
from jsparse.sae import gba


@pytest.mark.parametrize("width,groups,decades", [(512, 10, 2.0), (1024, 10, 1.0), (1000, 7, 3.0), (64, 1, 2.0)])
def test_targets_mean_gives_l0(width, groups, decades):
    t = gba_targets(16, width, groups=groups, decades=decades)
    assert len(t) == groups
    if groups > 1:
        assert np.all(np.diff(t) < 0)
        np.testing.assert_allclose(t[0] / t[-1], 10.0 ** decades, rtol=1e-9)
    # the expected L0 the trainer's own group layout implies: sum over latents of their target
    cfg = gba.make_config(width, targets=t)
    np.testing.assert_allclose(float(np.sum(np.asarray(cfg.targets, np.float64))), 16.0, rtol=2e-2)
    np.testing.assert_allclose(expected_l0(t, width), float(np.sum(np.asarray(cfg.targets, np.float64))), rtol=1e-6)
    np.testing.assert_allclose(expected_l0(gba_targets(16, width, groups=groups, decades=decades, factor=2.5),
                                           width), 2.5 * expected_l0(t, width), rtol=1e-9)


def test_targets_reject_bad_input():
    with pytest.raises(ValueError, match="l0"):
        gba_targets(0, 512)
    with pytest.raises(ValueError, match="l0"):
        gba_targets(400, 512)  # highest target >= 1
    with pytest.raises(ValueError, match="groups"):
        gba_targets(16, 8, groups=10)
    with pytest.raises(ValueError, match="factor"):
        gba_targets(16, 512, factor=-1)


@pytest.mark.parametrize("power,scale", [(1.0, 0.2), (1.7, 0.05), (0.6, 3.0)])
def test_match_l0_converges_on_power_law_runs(power, scale):
    """Realised L0 = 16 * scale * factor**power (a monotone pilot response): the secant on
    log-log finds the factor with L0 = 16 exactly in a few rounds."""
    calls = []

    def run(f):
        calls.append(f)
        return 16 * scale * f ** power

    out = match_l0(run, 16, rounds=5, rtol=0.02)
    assert out["matched"] and abs(math.log(out["l0"] / 16)) <= math.log(1.02)
    np.testing.assert_allclose(out["factor"], scale ** (-1 / power), rtol=0.05)
    assert len(calls) <= 4 and [f for f, _ in out["rounds"]] == calls


def test_match_l0_reports_unmatched_and_caps_factor():
    out = match_l0(lambda f: 1.0, 16, rounds=3, max_factor=5.0)  # a run whose L0 never moves
    assert not out["matched"] and out["l0"] == 1.0
    assert max(f for f, _ in out["rounds"]) <= 5.0
