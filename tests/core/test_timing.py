"""The benchmark timing helper: compile separated from runs, medians, clear errors."""
import jax.numpy as jnp
import pytest

from experiments._timing import time_call, time_host

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1


def test_time_call_reports_compile_and_median():
    t = time_call(lambda a: a @ a, (jnp.ones((8, 8)),), repeats=3)
    assert len(t.times_s) == 3
    assert sorted(t.times_s)[1] == t.median_s
    assert t.compile_s > 0 and t.median_s > 0 and t.cpu_median_s >= 0


def test_time_host_counts_calls():
    calls = []
    t = time_host(lambda: calls.append(1), repeats=4)
    assert len(calls) == 5  # one warm-up + four timed
    assert len(t.times_s) == 4


@pytest.mark.parametrize("fn", [time_call, time_host])
def test_repeats_validated(fn):
    with pytest.raises(ValueError, match="repeats"):
        fn(lambda: None, repeats=0) if fn is time_host else fn(lambda: None, (), repeats=0)
