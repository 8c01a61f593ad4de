"""Synthetic problems of the KroSBL paper (He & Joseph, TSP 2024, §7.1 of the notes).

y = (H_1 ⊗ ... ⊗ H_I) x + n with i.i.d. N(0, 1) factors (no column normalisation) and a
Kronecker-supported x: supp(x) = supp(s_1 ⊗ ... ⊗ s_I) with K active positions per factor.

* values="kron": x = x_1 ⊗ ... ⊗ x_I with x_i ~ N(0, 1) on its support (Fig. 2, 3, 5).
* values="iid": i.i.d. N(0, value_var) values on the Kronecker support (Fig. 4, value_var = 0.05).
* Noise variance σ² = mean|y_clean|² / 10^(snr_db/10), computed on the *largest* first factor
  (m_first_max rows) so that an M_1 sweep reuses one signal power, as in the reference code.
* Nesting (common random numbers within a trial): H_1 is drawn with m_first_max rows and its first
  M_1 rows are used; noise is drawn at full size and its first M_1 row-slabs kept; the support of
  each factor is {j : rank(u_ij) < K} for one uniform draw u_i, so supports grow nestedly with K.
  `k` and `snr_db` may be traced (vmapped in a sweep); the dimensions must be static.
Complex problems (complex=True) use CN(0, 1) factors, values and noise.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jsparse.core import validation as V
from jsparse.core.kron import kron_matvec
from jsparse.sbl._common import HIGHEST, check_snr, full_gamma


def np_prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out

__all__ = ["Problem", "kron_problem", "dense_problem"]


class Problem(NamedTuple):
    """y (M,), factors (I tuple of (M_i, N_i)), x (N,), noise_var (), supports (I tuple of (N_i,) bool)."""

    y: jax.Array
    factors: tuple
    x: jax.Array
    noise_var: jax.Array
    supports: tuple


def _normal(key, shape, dtype, complex_):
    if complex_:
        kr, ki = jax.random.split(key)
        re = jax.random.normal(kr, shape, dtype)
        im = jax.random.normal(ki, shape, dtype)
        z = jax.lax.complex(re, im)
        return z / jnp.sqrt(jnp.asarray(2.0, dtype)).astype(z.dtype)
    return jax.random.normal(key, shape, dtype)


def _kron_signal(uniforms, normals, n, k, values, value_var, dtype):
    """Nested supports {j : rank(u_ij) < K} per factor and x on their Kronecker product.

    normals: the I per-factor (N_i,) value draws followed by the (N,) i.i.d. draw.
    """
    supports, parts, start = [], [], 0
    for i, c in enumerate(n):
        u = uniforms[start : start + c]
        start += c
        rank = jnp.sum(u[None, :] < u[:, None], axis=1)  # rank of each entry (ties: measure zero)
        s = rank < k
        supports.append(s)
        parts.append(jnp.where(s, normals[i], 0))
    if values == "kron":
        x = parts[0]
        for p in parts[1:]:
            x = jnp.outer(x, p).reshape(-1)
    else:
        mask = full_gamma([s.astype(dtype) for s in supports]) > 0
        x = jnp.where(mask, jnp.sqrt(jnp.asarray(value_var, dtype)) * normals[len(n)], 0)
    return supports, x


def kron_problem(
    key: jax.Array,
    n: Sequence[int] = (15, 15, 15),
    m: Sequence[int] = (8, 12, 15),
    k: int | jax.Array = 3,
    snr_db: float | jax.Array = 25.0,
    *,
    values: str = "kron",
    value_var: float = 0.05,
    m_first_max: int | None = None,
    dtype=jnp.float32,
    complex: bool = False,  # noqa: A002 - mirrors the dtype vocabulary
) -> Problem:
    """Draw one paper-style problem (see module docstring). Returns a `Problem`.

    Args:
      key: PRNG key or int seed.
      n, m: static per-factor sizes (N_i, M_i), M_i <= N_i not required.
      k: active positions per factor (K), 1 <= k <= min N_i; may be traced.
      snr_db: SNR in dB of the full (m_first_max-row) measurement; may be traced.
      values: "kron" or "iid" (see module docstring).
      m_first_max: rows drawn for H_1 (default m[0]); the first m[0] are used.
      dtype: real dtype (float32/float64); complex=True gives the matching complex dtype.
    """
    if values not in ("kron", "iid"):
        raise ValueError(f"values: expected 'kron' or 'iid', got {values!r}")
    if len(n) != len(m) or len(n) < 2:
        raise ValueError(f"n, m: expected two equal-length sequences of >= 2 sizes, got {n}, {m}")
    m_first_max = m[0] if m_first_max is None else m_first_max
    if m_first_max < m[0]:
        raise ValueError(f"m_first_max: expected >= m[0] = {m[0]}, got {m_first_max}")
    rows = [m_first_max] + list(m[1:])
    # One normal and one uniform draw for everything (few RNG kernels -> fast compilation).
    sizes = [r * c for r, c in zip(rows, n)] + list(n) + [int(np_prod(n)), int(np_prod(rows))]
    check_snr(snr_db)
    k_normal, k_uniform = jax.random.split(V.as_key(key, "key"))
    flat = _normal(k_normal, (sum(sizes),), dtype, complex)
    pieces, start = [], 0
    for size in sizes:
        pieces.append(flat[start : start + size])
        start += size
    factors_full = [pieces[i].reshape(r, c) for i, (r, c) in enumerate(zip(rows, n))]
    supports, x = _kron_signal(jax.random.uniform(k_uniform, (sum(n),), dtype), pieces[len(n):], n, k, values,
                               value_var, dtype)
    y_clean = kron_matvec(factors_full, x)
    rdt = jnp.finfo(y_clean.dtype).dtype
    noise_var = (jnp.mean(jnp.abs(y_clean) ** 2) / 10.0 ** (jnp.asarray(snr_db, rdt) / 10.0)).astype(rdt)
    noise = jnp.sqrt(noise_var).astype(y_clean.dtype) * pieces[-1]
    y_full = (y_clean + noise).reshape(rows)[: m[0]].reshape(-1)
    factors = (factors_full[0][: m[0]],) + tuple(factors_full[1:])
    return Problem(y_full, factors, x, noise_var, tuple(supports))


def dense_problem(key: jax.Array, m: int, n: int, k: int, snr_db: float = 25.0, *, dtype=jnp.float32) -> tuple:
    """(y (m,), H (m, n), x (n,), noise_var): N(0,1) dictionary, k random N(0,1) nonzeros."""
    check_snr(snr_db)
    k1, k2, k3, k4 = jax.random.split(V.as_key(key, "key"), 4)
    H = jax.random.normal(k1, (m, n), dtype)
    idx = jax.random.permutation(k2, n)[:k]
    x = jnp.zeros((n,), dtype).at[idx].set(jax.random.normal(k3, (k,), dtype))
    y_clean = jnp.matmul(H, x, precision=HIGHEST)
    noise_var = jnp.mean(y_clean**2) / 10.0 ** (snr_db / 10.0)
    y = y_clean + jnp.sqrt(noise_var) * jax.random.normal(k4, (m,), dtype)
    return y, H, x, noise_var.astype(dtype)
