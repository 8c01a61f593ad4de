"""QPSK symbol error rate over an estimated MIMO channel (the IRS experiment's second metric).

A rank-1 SVD precoder/combiner is built from the estimate Ĝ and the symbols travel over the true
channel G; `ser_qpsk` gives the exact expected SER (closed form) or a Monte Carlo count.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from jsparse.core import linalg
from jsparse.core import validation as V
from jsparse.sbl._common import HIGHEST, real_dtype

__all__ = ["ser_qpsk"]


def _ser_one(est: jax.Array, true: jax.Array, snr_lin: jax.Array) -> jax.Array:
    """Exact expected QPSK SER for one (N_B, N_M) channel pair (see `ser_qpsk`)."""
    u, s, vh = linalg.svd(est)  # CPU-safe under vmap (see jsparse.core.linalg)
    comb, prec = u[:, 0], jnp.conj(vh[0])
    h = jnp.vdot(comb, jnp.matmul(true, prec, precision=HIGHEST))  # true effective gain u^H G v
    h_hat = s[0]  # estimated gain u^H Ĝ v (real, >= 0)
    rdt = s.dtype
    ok = (h_hat > 0) & (jnp.abs(h) > 0)
    # z = y / ĥ = (h/ĥ) s + n/ĥ; rotate by e^{jπ/4} so the correct decision region is a quadrant.
    c = jnp.where(ok, h / jnp.where(ok, h_hat, 1).astype(h.dtype), 0) * jnp.exp(1j * jnp.pi / 4).astype(h.dtype)
    sigma_r = jnp.sqrt(jnp.abs(h) ** 2 / snr_lin / 2) / jnp.where(ok, h_hat, 1)
    sigma_r = jnp.where(ok, sigma_r, 1)
    p_ok = ndtr(jnp.real(c) / sigma_r) * ndtr(jnp.imag(c) / sigma_r)
    # ĥ = 0 or h = 0: all decision distances tie and the first symbol is always chosen.
    return jnp.where(ok, 1 - p_ok, 0.75).astype(rdt)


def ser_qpsk(
    est_channels: jax.Array,
    true_channels: jax.Array,
    snr_db,
    *,
    key: jax.Array | None = None,
    num_symbols: int = 100_000,
) -> jax.Array:
    """QPSK symbol error rate with a rank-1 SVD precoder/combiner from the estimate, per configuration.

    For each k: (u, v) = leading singular vectors of Ĝ_k; symbols s ∈ {1, j, −1, −j} are sent over
    the true scalar channel h = uᴴ G_k v with noise CN(0, |h|²/SNR) (the reference sets the noise
    from the received symbol power), and detected by minimum distance to ĥ s' with ĥ = uᴴ Ĝ_k v.

    Args:
      est_channels, true_channels: (K, N_B, N_M) complex.
      snr_db: SNR in dB (scalar, may be traced).
      key: None for the exact expected SER (closed form: 1 − Φ(Re c/σ)Φ(Im c/σ), c = e^{jπ/4} h/ĥ);
        a PRNG key for a Monte Carlo count over `num_symbols` symbols per configuration, drawn
        as Binomial(num_symbols, expected SER) — the same distribution as simulating the symbols.
      num_symbols: symbols per configuration for the Monte Carlo estimate (reference: 1e5).

    Returns:
      (K,) SER per configuration (real; average it for the paper's metric).
    """
    est = V.check_array(est_channels, "est_channels", ndim=3, dtype="inexact")
    true = V.check_array(true_channels, "true_channels", ndim=3, dtype="inexact")
    if est.shape != true.shape:
        raise ValueError(f"est_channels: shape {est.shape} differs from true_channels {true.shape}")
    num_symbols = V.check_int(num_symbols, "num_symbols", minimum=1)
    rdt = real_dtype(true.dtype)
    snr_lin = 10.0 ** (jnp.asarray(snr_db, rdt) / 10.0)
    p = jax.vmap(_ser_one, in_axes=(0, 0, None))(est.astype(true.dtype), true, snr_lin)
    if key is None:
        return p
    counts = jax.random.binomial(key, jnp.asarray(num_symbols, rdt), jnp.clip(p, 0, 1), shape=p.shape, dtype=rdt)
    return counts / num_symbols
