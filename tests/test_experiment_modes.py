"""Experiments run in their own numeric mode: one that needs float64 (unmixing) switches it on for
itself only, so an experiment run after it in `python -m experiments all` gives the numbers it
gives alone."""
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.lasso import run as lasso_run
from experiments.unmixing import run as unmixing_run

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _lasso_trial():
    out = jax.jit(lasso_run.trial, static_argnums=2)(jax.random.PRNGKey(3), 20.0, "fista")
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(out)]


def test_unmixing_keeps_64_bit_mode_to_itself(tmp_path, monkeypatch):
    x64_before = bool(jax.config.read("jax_enable_x64"))
    solo = _lasso_trial()
    seen = {}
    monkeypatch.setattr(unmixing_run, "_run", lambda *a, **k: seen.setdefault("dtype", jnp.zeros(1).dtype))
    unmixing_run.run(tmp_path / "unmixing", quick=True)
    assert seen["dtype"] == jnp.float64  # the unmixing body runs in float64
    assert bool(jax.config.read("jax_enable_x64")) == x64_before
    after = _lasso_trial()  # the next experiment sees the default mode again
    for a, b in zip(solo, after):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_no_reproduction_switches_64_bit_mode_process_wide():
    """Reproductions (run by `python -m experiments all` one after another) scope float64 with
    `jax.enable_x64(True)`; only stand-alone benchmark scripts may set it globally."""
    pattern = re.compile(r"config\.update\(\s*[\"']jax_enable_x64")
    modules = (ROOT / "experiments").glob("*/*.py")
    offenders = [str(p.relative_to(ROOT)) for p in modules if pattern.search(p.read_text())]
    assert offenders == []
