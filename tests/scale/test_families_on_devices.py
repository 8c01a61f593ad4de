"""Family trial functions through the harness: 4 simulated devices give the 1-device per-trial results."""
import textwrap

import pytest

from tests.scale._subprocess import run_with_devices

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1

SCRIPT = textwrap.dedent(
    r"""
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)  # float64: 30 EM steps amplify float32 rounding of
    # batched vs single programs to 0.4-1.7 % on a few trials, which would hide a real difference
    from jsparse import sbl
    from jsparse.core import metrics, montecarlo

    def trial(key, snr_db, method):
        p = sbl.synthetic.kron_problem(key, n=(6, 6, 6), m=(4, 5, 6), k=2, snr_db=snr_db, dtype=jnp.float64)
        if method == "komp":
            x = sbl.kron_omp(p.y, p.factors, max_atoms=(3, 3, 3), tol=1e-2).x
        else:
            x = sbl.krosbl(p.y, p.factors, method=method, max_iters=30).x
        return {"nmse": metrics.nmse(x, p.x)}

    grid = {"snr_db": [15.0, 30.0], "method": ["svd", "am", "komp"]}
    one = montecarlo.sweep(trial, grid, num_trials=5, key=2, chunk_size=4, devices=jax.devices()[:1], progress=False)
    four = montecarlo.sweep(trial, grid, num_trials=5, key=2, chunk_size=4, progress=False)
    assert four.meta["device_count"] == 4
    np.testing.assert_allclose(four.arrays["nmse"], one.arrays["nmse"], rtol=1e-8, atol=0)
    assert np.median(one.arrays["nmse"][1, 0]) < 1e-2  # SVD-KroSBL recovers at 30 dB
    print("FAMILIES-OK")
    """
)


def test_sbl_trials_on_four_devices_match_one():
    assert "FAMILIES-OK" in run_with_devices(SCRIPT)
