"""Small problems shared by the SBL tests."""
from __future__ import annotations

import jax.numpy as jnp

from jsparse.sbl.synthetic import kron_problem

SMALL_N = (5, 6, 4)
SMALL_M = (4, 5, 4)


def small_problem(key, dtype=jnp.float64, *, n=SMALL_N, m=SMALL_M, k=2, snr_db=25.0, values="kron"):
    complex_ = jnp.issubdtype(jnp.dtype(dtype), jnp.complexfloating)
    real = jnp.finfo(jnp.dtype(dtype)).dtype
    return kron_problem(key, n, m, k, snr_db, values=values, value_var=1.0, dtype=real, complex=complex_)
