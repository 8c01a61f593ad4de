"""The harness on a device mesh: 4 simulated CPU devices give the same results as 1.

JAX fixes its device count when it starts, so the checks run in a subprocess started with
XLA_FLAGS=--xla_force_host_platform_device_count=4.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1

SCRIPT = textwrap.dedent(
    r"""
    import sys, tempfile
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh
    from jsparse.core import montecarlo

    assert jax.device_count() == 4, jax.devices()
    traces = []

    def trial(key, snr_db, method):
        traces.append(method)  # runs at trace time only
        A = jax.random.normal(key, (6, 6))
        w = jnp.linalg.eigh(A @ A.T + snr_db * jnp.eye(6))[0]  # batched eigh, as in SBL
        return {"score": jnp.sum(w) * (1.0 if method == "a" else 2.0), "vec": w}

    grid = {"snr_db": [1.0, 2.0, 3.0], "method": ["a", "b"]}
    one = montecarlo.sweep(trial, grid, num_trials=7, key=11, chunk_size=5, devices=jax.devices()[:1], progress=False)
    n_traces_one = len(traces)
    four = montecarlo.sweep(trial, grid, num_trials=7, key=11, chunk_size=5, progress=False)
    assert four.meta["device_count"] == 4 and one.meta["device_count"] == 1
    np.testing.assert_allclose(four.arrays["score"], one.arrays["score"], rtol=1e-5)
    np.testing.assert_allclose(four.arrays["vec"], one.arrays["vec"], rtol=1e-5, atol=1e-5)
    # (explicit vmapped batches on several CPU devices can deadlock in batched LAPACK; one device here)
    batched = montecarlo.sweep(trial, grid, num_trials=7, key=11, chunk_size=6, batch_size=2,
                               devices=jax.devices()[:1], progress=False)
    np.testing.assert_allclose(batched.arrays["score"], one.arrays["score"], rtol=1e-5)

    # one trace per static value and one dispatch per chunk (3 points x 7 trials / 5 = 5 chunks)
    assert n_traces_one == 2, n_traces_one
    assert four.meta["dispatches"] == 2 * 5, four.meta["dispatches"]

    # checkpoints written with 4 devices resume on 1 device (chunking is device independent)
    with tempfile.TemporaryDirectory() as tmp:
        montecarlo.sweep(trial, grid, num_trials=7, key=11, chunk_size=5, out_dir=tmp, progress=False)
        again = montecarlo.sweep(trial, grid, num_trials=7, key=11, chunk_size=5, out_dir=tmp,
                                 devices=jax.devices()[:1], progress=False)
        assert again.meta["dispatches"] == 0
        assert again.records == four.records

    # an explicit mesh must name the trial axis
    bad = Mesh(np.asarray(jax.devices()), ("data",))
    try:
        montecarlo.sweep(trial, grid, num_trials=2, mesh=bad, progress=False)
    except ValueError as err:
        assert "mesh" in str(err) and "trials" in str(err), err
    else:
        raise AssertionError("mesh without a 'trials' axis was accepted")
    good = Mesh(np.asarray(jax.devices()).reshape(2, 2), ("trials", "model"))
    two = montecarlo.sweep(trial, grid, num_trials=7, key=11, chunk_size=5, mesh=good, progress=False)
    np.testing.assert_allclose(two.arrays["score"], one.arrays["score"], rtol=1e-5)
    print("DEVICES-OK")
    """
)


def test_four_devices_match_one(tmp_path):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
        " --xla_cpu_enable_concurrency_optimized_scheduler=false"
    ).strip()
    env["JSPARSE_PROGRESS"] = "0"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=root, env=env, capture_output=True, text=True, timeout=500
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DEVICES-OK" in proc.stdout
