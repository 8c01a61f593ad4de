"""The plain NumPy KroSBL of experiments/numpy_krosbl.py (the benchmark's baseline) agrees with jsparse.

Agreement in float64 to 1e-8 (x relative to its largest entry, σ² relative) and the same number of EM
iterations, for SVD- and AM-KroSBL with learned noise variance, on three draws of one small shape
(one compilation per method).
"""
from __future__ import annotations

import jax
import numpy as np
import pytest

from experiments.numpy_krosbl import krosbl_np
from jsparse.sbl import krosbl
from tests.sbl.problems import small_problem


@pytest.mark.parametrize("method", ["svd", "am"])
def test_numpy_port_agrees_with_jsparse(x64, method):
    for seed in (2, 3, 4):
        p = small_problem(jax.random.PRNGKey(seed))
        res = krosbl(p.y, p.factors, method=method)
        x, gammas, s2, iters, converged, counts = krosbl_np(np.asarray(p.y), [np.asarray(f) for f in p.factors],
                                                            method)
        xj = np.asarray(res.x)
        assert iters == int(res.iterations) == counts["iterations"]
        assert converged == bool(res.converged)
        assert np.max(np.abs(x - xj)) <= 1e-8 * np.max(np.abs(xj))
        assert abs(s2 - float(res.noise_var)) <= 1e-8 * s2
        for g, gj in zip(gammas, res.gammas):
            np.testing.assert_allclose(g, np.asarray(gj), rtol=1e-8, atol=1e-12 * float(np.max(np.asarray(gj))))
        assert (counts["inner_sweeps"] > 0) == (method == "am")
