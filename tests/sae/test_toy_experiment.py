"""The SAE experiment's imbalanced toy (seed aggregation, data variants) and its frequency plot."""
import numpy as np
import pytest

from experiments.sae import run, toy
from jsparse.sae import metrics


def test_frequency_plot_takes_never_fired_latents_out_of_the_first_bin():
    # 3 latents never fired (frequency 0 is clamped to the lowest edge, -6), 4 fired
    freqs = np.array([0.0, 0.0, 0.0, 1e-3, 2e-3, 0.1, 0.5])
    counts, edges = metrics.frequency_histogram(freqs, bins=24)
    assert counts[0] == 3  # the unexplained bar at -6 of the old plot
    fired, e = run.fired_histogram(counts, edges, never_fired=3)
    assert fired[0] == 0 and fired.sum() == 4
    np.testing.assert_array_equal(e, edges)
    with pytest.raises(ValueError, match="never_fired"):
        run.fired_histogram(counts, edges, never_fired=4)


def test_toy_rows_average_over_seeds_and_keep_each():
    r = lambda f9: dict(frr08=1.0, frr09=f9, l0=20.0, dead=0.5, fvu=0.1)  # noqa: E731
    rows = run.toy_rows({"topk k=20": [r(0.9), r(1.0), r(0.8)], "ba": [r(0.25)]})
    top = rows[0]
    assert top["seeds"] == 3 and top["frr09"] == pytest.approx(0.9) and top["frr09_seeds"] == [0.9, 1.0, 0.8]
    assert top["paper"] == (100.0, 98.4) and rows[1]["paper"] is None


def test_toy_stream_variants():
    unit = toy.toy_stream(toy.SEEDS[0][0], 8, n=16, d=6, s=(5,), unit_norm=True)  # one level: one compile
    x, h = unit.stream.batch_with_codes(0)  # the mixture under the scaling
    np.testing.assert_array_equal((np.asarray(h) > 0).sum(1), 5)
    xu = np.asarray(unit.batch(0))
    np.testing.assert_allclose(np.linalg.norm(xu, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(xu * np.linalg.norm(np.asarray(x), axis=1, keepdims=True), np.asarray(x),
                               rtol=1e-5, atol=1e-6)
    assert set(toy.ATTEMPTS) >= {"base", "tied", "width128", "unitnorm", "d84"}


def test_frontier_without_the_light_problem_is_empty(tmp_path):
    """`--problems heavy` once raised KeyError 'light' in the frontier section."""
    cfg = run.settings(True)
    cfg["problems"] = {"heavy": cfg["problems"]["heavy"]}
    assert run.frontier(tmp_path, cfg, resume=True) == []
