"""IRS-aided MIMO uplink channel estimation (He & Joseph, TSP 2024, §"IRS"): simulator and metrics.

Model (MS -> IRS -> BS, no direct link; every array a half-wavelength ULA):

* grid of G spatial frequencies f_g = 2g/G − 1, g = 0..G−1; steering a_K(f) = e^{jπ f k}/√K;
* MS->IRS   H_1 = √(N_M N_I / L) Σ_{a∈S_I} α_a a_I(f_a) a_M(f_m)^H      (N_I x N_M),
  IRS->BS   H_2 = √(N_B N_I / L) Σ_{b∈S_B} β_b a_B(f_b) a_I(f_d)^H      (N_B x N_I),
  with S_I, S_B blocks of L contiguous grid points (never wrapping), one MS angle m, one IRS
  departure angle d, and gains α, β ~ CN(0, 1);
* pilots X (N_M x K_P) QPSK / √N_M; K_I IRS configurations θ_k ∈ {±1/√N_I}^{N_I}; a configuration
  with ||H_2 diag(θ_k) H_1||_F < 1e-5 is redrawn (the first of `redraws` candidates that passes).
  Pilots and candidate configurations form a `Training` (`draw_training`); as in the reference
  script, draw it once and pass it to every realisation (`simulate(..., training=...)`), or leave
  it out to draw one per realisation from the realisation's key;
* y = vec([Y_1 ... Y_{K_I}]), Y_k = H_2 diag(θ_k) H_1 X + W_k, BS index fastest, then pilot,
  then configuration; W ~ CN(0, σ² I) with σ² = mean |ȳ|² / 10^{SNR/10}.

Then y = (Φ_IRS ⊗ Φ_MS ⊗ A_B) x + w exactly, with Φ_IRS = Θᵀ D_I (K_I x G), D_I[:, j] =
a_I(f_0) ∘ conj(a_I(f_j)) (the cascaded IRS dictionary), Φ_MS = Xᵀ conj(A_M) (K_P x G), A_B (N_B x G),
and x (G³, C-order over (cascaded IRS, MS, BS)) 9-sparse: x[(d − a) mod G, m, b] = √(N_M N_B) N_I / L
· α_a β_b. The cascaded block can wrap around the grid end even though S_I does not.

Metrics: NMSE of the effective channels G_k = H_2 diag(θ_k) H_1 (N_B x N_M), averaged over the K_I
configurations, and the QPSK symbol error rate with a rank-1 SVD precoder/combiner from the
estimate (`ser_qpsk`).

Why the training draw matters: with K_P = 3 pilots for N_M = 6 antennas, Φ_MS is 3 x 18 and about
2.4 % of QPSK pilot matrices make two or more of its columns exactly collinear (e.g. the MS angles
{0, 6, 12}, spaced by 2/3 in spatial frequency). A realisation whose MS angle lies in such a set is
unidentifiable: every estimator, including oracle-level OMP, picks a wrong MS angle and the NMSE
stays near 0 dB. Per-realisation draws put ~1 such realisation in every 50 into the mean; a single
draw (the reference) either has the defect for all realisations or for none. `ms_coherence` reports
the largest |cosine| between distinct Φ_MS columns so a run can record it.

Everything is a pure function of the PRNG keys.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jsparse.core import validation as V
from jsparse.sbl._common import HIGHEST, check_snr, real_dtype
from jsparse.sbl.qpsk import ser_qpsk

__all__ = [
    "IRSSetup",
    "IRSProblem",
    "Training",
    "draw_training",
    "matlab_training",
    "ms_coherence",
    "steering",
    "cascaded_dictionary",
    "check_setup",
    "simulate",
    "channels_from_x",
    "channel_nmse",
    "ser_qpsk",
]


class IRSSetup(NamedTuple):
    """Static sizes of the IRS problem (the reference values are the defaults).

    ms_antennas N_M, bs_antennas N_B, irs_elements N_I, grid G (atoms per dictionary), spread L
    (contiguous angles per block), pilots K_P, configs K_I, redraws (candidate configurations per
    slot for the degenerate-configuration redraw), degenerate_tol (Frobenius-norm threshold).
    """

    ms_antennas: int = 6
    bs_antennas: int = 16
    irs_elements: int = 256
    grid: int = 18
    spread: int = 3
    pilots: int = 3
    configs: int = 6
    redraws: int = 16
    degenerate_tol: float = 1e-5

    @property
    def dims(self) -> tuple[int, int, int]:
        """(N_1, N_2, N_3) = (G, G, G) of the Kronecker factors."""
        return (self.grid, self.grid, self.grid)

    @property
    def rows(self) -> tuple[int, int, int]:
        """(M_1, M_2, M_3) = (K_I, K_P, N_B); M = K_I K_P N_B measurements."""
        return (self.configs, self.pilots, self.bs_antennas)


class IRSProblem(NamedTuple):
    """One realisation (all arrays; batched along a leading axis under vmap).

    y: (K_I K_P N_B,) noisy measurements; factors: (Φ_IRS (K_I, G), Φ_MS (K_P, G), A_B (N_B, G));
    x: (G³,) true coefficients; channels: (K_I, N_B, N_M) true effective channels G_k;
    ms_dict: (N_M, G) conj(A_M), which maps x to channels with Φ_IRS and A_B (`channels_from_x`);
    noise_var: () σ² (real); thetas: (K_I, N_I) configurations (real ±1/√N_I);
    pilots: (N_M, K_P); valid: () bool, every configuration passed the degenerate check and the
    pilots see the channel (received power > degenerate_tol² × channel power × pilot power).
    """

    y: jax.Array
    factors: tuple
    x: jax.Array
    channels: jax.Array
    ms_dict: jax.Array
    noise_var: jax.Array
    thetas: jax.Array
    pilots: jax.Array
    valid: jax.Array


class Training(NamedTuple):
    """Training signals shared by realisations: pilots (N_M, K_P) complex QPSK / √N_M, and
    candidates (redraws, K_I, N_I) real ±1/√N_I configurations (slot k uses the first candidate
    whose effective channel passes the degenerate check)."""

    pilots: jax.Array
    candidates: jax.Array


def check_setup(setup: IRSSetup) -> IRSSetup:
    """Raise ValueError naming the offending field of an IRSSetup."""
    if not isinstance(setup, IRSSetup):
        raise ValueError(f"setup: expected an IRSSetup, got {type(setup).__name__}")
    for name in ("ms_antennas", "bs_antennas", "irs_elements", "grid", "spread", "pilots", "configs", "redraws"):
        V.check_int(getattr(setup, name), name, minimum=1)
    V.check_int(setup.spread, "spread", maximum=setup.grid)
    V.check_positive(setup.degenerate_tol, "degenerate_tol", allow_zero=True)
    return setup


def steering(num: int, grid: int, dtype=jnp.complex64) -> jax.Array:
    """(num, grid) ULA dictionary: column g is e^{jπ f_g k}/√num, f_g = 2g/grid − 1, k = 0..num−1."""
    rdt = real_dtype(dtype)
    f = 2.0 * jnp.arange(grid, dtype=rdt) / grid - 1.0
    k = jnp.arange(num, dtype=rdt)
    phase = jnp.pi * k[:, None] * f[None, :]
    z = jax.lax.complex(jnp.cos(phase), jnp.sin(phase))
    return (z / jnp.sqrt(jnp.asarray(num, rdt)).astype(z.dtype)).astype(dtype)


def cascaded_dictionary(irs_elements: int, grid: int, dtype=jnp.complex64) -> jax.Array:
    """(N_I, G) D_I with D_I[:, j] = a_I(f_0) ∘ conj(a_I(f_j)) (spatial frequency f_0 − f_j)."""
    a = steering(irs_elements, grid, dtype)
    return a[:, :1] * jnp.conj(a)


def _cn(key, shape, rdt):
    re, im = jax.random.normal(key, (2, *shape), rdt)
    z = jax.lax.complex(re, im)
    return z / jnp.sqrt(jnp.asarray(2.0, rdt)).astype(z.dtype)


def _qpsk(key, shape, rdt):
    """Unit-modulus QPSK symbols (±1 ± j)/√2."""
    bits = jax.random.bernoulli(key, 0.5, (2, *shape))
    s = jnp.where(bits, 1.0, -1.0).astype(rdt) / jnp.sqrt(jnp.asarray(2.0, rdt))
    return jax.lax.complex(s[0], s[1])


def _outer_conj(u: jax.Array, v: jax.Array) -> jax.Array:
    """u v^H as a (len u, len v) matrix product."""
    return jnp.matmul(u[:, None], jnp.conj(v)[None, :], precision=HIGHEST)


def _effective(h2: jax.Array, thetas: jax.Array, h1: jax.Array) -> jax.Array:
    """(..., N_B, N_M) H_2 diag(θ) H_1 for θ of shape (..., N_I)."""
    return jnp.einsum("bi,...i,im->...bm", h2, thetas.astype(h2.dtype), h1, precision=HIGHEST)


def _check_dtype(dtype):
    if jnp.dtype(dtype) not in (jnp.dtype(jnp.complex64), jnp.dtype(jnp.complex128)):
        raise ValueError(f"dtype: expected complex64 or complex128, got {dtype}")


def draw_training(key: jax.Array, setup: IRSSetup = IRSSetup(), dtype=jnp.complex64) -> Training:
    """Draw QPSK pilots (N_M, K_P) and `redraws` x K_I candidate ±1/√N_I IRS configurations."""
    check_setup(setup)
    _check_dtype(dtype)
    rdt = real_dtype(dtype)
    k_p, k_c = jax.random.split(V.as_key(key, "key"))
    symbols = _qpsk(k_p, (setup.ms_antennas, setup.pilots), rdt)
    pilots = symbols / jnp.sqrt(jnp.asarray(setup.ms_antennas, rdt)).astype(symbols.dtype)
    signs = jax.random.bernoulli(k_c, 0.5, (setup.redraws, setup.configs, setup.irs_elements))
    candidates = jnp.where(signs, 1.0, -1.0).astype(rdt) / jnp.sqrt(jnp.asarray(setup.irs_elements, rdt))
    return Training(pilots.astype(dtype), candidates)


def matlab_training(setup: IRSSetup = IRSSetup(), dtype=jnp.complex64) -> Training:
    """The pilots and configurations the reference `main.m` draws right after MATLAB starts.

    main.m's first random statements are `X = pilot_gen(N_M, K_P)/√N_M` (one `rand` per entry,
    column-major, QPSK by quarter: [0, .25) → (1+j)/√2, [.25, .5) → (1−j)/√2, [.5, .75) → (−1+j)/√2,
    else (−1−j)/√2) and `irs_pattern = ((rand(N_I, K_I) > 0.5)·2 − 1)/√N_I`. MATLAB's start-up
    generator (Mersenne Twister, `rng default`) yields the same doubles as
    `numpy.random.RandomState(5489).random_sample` (0.8147, 0.9058, 0.1270, ...), so this is that
    draw, assuming the authors' results came from one run of main.m right after starting MATLAB (not
    confirmed). Candidate rows 1.. (the redraw, which never fires at the 1e-5 threshold) continue
    the same stream. Returns a `Training` with host-computed constants.
    """
    check_setup(setup)
    _check_dtype(dtype)
    rng = np.random.RandomState(5489)
    nm, kp, ni, ki = setup.ms_antennas, setup.pilots, setup.irs_elements, setup.configs
    u = rng.random_sample(nm * kp)
    qpsk = np.select([u < 0.25, u < 0.5, u < 0.75], [1 + 1j, 1 - 1j, -1 + 1j], -1 - 1j) / np.sqrt(2)
    pilots = qpsk.reshape(kp, nm).T / np.sqrt(nm)  # MATLAB reshape(s, N_M, K_P) is column-major
    signs = (rng.random_sample(setup.redraws * ki * ni) > 0.5) * 2.0 - 1.0
    candidates = signs.reshape(setup.redraws, ki, ni) / np.sqrt(ni)  # rand(N_I, K_I): column k = slot k
    rdt = real_dtype(dtype)
    return Training(jnp.asarray(pilots, dtype), jnp.asarray(candidates, rdt))


def _check_training(training: Training, setup: IRSSetup) -> Training:
    if not isinstance(training, Training):
        raise ValueError(f"training: expected an irs.Training, got {type(training).__name__}")
    want = ((setup.ms_antennas, setup.pilots), (setup.redraws, setup.configs, setup.irs_elements))
    got = (tuple(training.pilots.shape[-2:]), tuple(training.candidates.shape[-3:]))
    if got != want:
        raise ValueError(f"training: pilots/candidates shapes {got} do not match the setup {want}")
    return training


def ms_coherence(phi_ms: jax.Array) -> jax.Array:
    """Largest |cosine| between two distinct columns of Φ_MS (K_P, G); 1 means an unidentifiable pair."""
    norms = jnp.maximum(jnp.linalg.norm(phi_ms, axis=0, keepdims=True), jnp.finfo(real_dtype(phi_ms.dtype)).tiny)
    q = phi_ms / norms.astype(phi_ms.dtype)
    c = jnp.abs(jnp.matmul(jnp.conj(q).T, q, precision=HIGHEST))
    return jnp.max(jnp.where(jnp.eye(c.shape[0], dtype=bool), 0, c))


def simulate(
    key: jax.Array, snr_db, setup: IRSSetup = IRSSetup(), dtype=jnp.complex64, *, training: Training | None = None
) -> IRSProblem:
    """Draw one channel realisation and its noisy training signal.

    Args:
      key: PRNG key or int seed; the result is a pure function of (key, snr_db, setup, dtype, training).
      snr_db: training SNR in dB (scalar; may be traced).
      setup: static sizes (IRSSetup); `configs` etc. must be >= 1.
      dtype: jnp.complex64 or jnp.complex128.
      training: pilots and candidate configurations shared by realisations (`draw_training`; the
        reference draws them once per run). None draws them from `key` (one per realisation).

    Returns: IRSProblem (see its docstring).
    """
    check_setup(setup)
    _check_dtype(dtype)
    check_snr(snr_db)
    rdt = real_dtype(dtype)
    nm, nb, ni, g, l = setup.ms_antennas, setup.bs_antennas, setup.irs_elements, setup.grid, setup.spread
    k = jax.random.split(V.as_key(key, "key"), 10)
    ms = jax.random.randint(k[0], (), 0, g)  # MS angle of departure
    irs_start = jax.random.randint(k[1], (), 0, g - l + 1)  # IRS arrival block (no wrap)
    irs_dep = jax.random.randint(k[2], (), 0, g)  # IRS angle of departure
    bs_start = jax.random.randint(k[3], (), 0, g - l + 1)  # BS arrival block (no wrap)
    alpha = _cn(k[4], (l,), rdt)
    beta = _cn(k[5], (l,), rdt)
    training = draw_training(k[6], setup, dtype) if training is None else _check_training(training, setup)
    pilots, candidates = training.pilots.astype(dtype), training.candidates.astype(rdt)

    a_m, a_i, a_b = steering(nm, g, dtype), steering(ni, g, dtype), steering(nb, g, dtype)
    irs_idx = irs_start + jnp.arange(l)
    bs_idx = bs_start + jnp.arange(l)
    c1 = jnp.sqrt(jnp.asarray(nm * ni / l, rdt))
    c2 = jnp.sqrt(jnp.asarray(nb * ni / l, rdt))
    h1 = c1.astype(dtype) * _outer_conj((a_i[:, irs_idx] * alpha[None, :]).sum(axis=1), a_m[:, ms])
    h2 = c2.astype(dtype) * _outer_conj((a_b[:, bs_idx] * beta[None, :]).sum(axis=1), a_i[:, irs_dep])

    # Degenerate-configuration redraw: first candidate per slot with a non-negligible channel.
    norms = jnp.sqrt(jnp.sum(jnp.abs(_effective(h2, candidates, h1)) ** 2, axis=(-2, -1)))  # (R, K_I)
    ok = norms >= setup.degenerate_tol
    first = jnp.argmax(ok, axis=0)  # 0 when none passes (flagged by `valid`)
    thetas = jnp.take_along_axis(candidates, first[None, :, None], axis=0)[0]  # (K_I, N_I)
    valid = jnp.all(jnp.any(ok, axis=0))

    channels = _effective(h2, thetas, h1)  # (K_I, N_B, N_M)
    clean = jnp.einsum("kbm,mp->kpb", channels, pilots, precision=HIGHEST).reshape(-1)
    power = jnp.mean(jnp.abs(clean) ** 2)
    # Pilots orthogonal to the MS steering vector see no channel (the SNR would be set against
    # rounding noise): with few MS antennas and pilots, e.g. N_M = 4, K_P = 2, about 0.3 % of draws.
    seen = power > setup.degenerate_tol**2 * jnp.mean(jnp.abs(channels) ** 2) * jnp.mean(jnp.abs(pilots) ** 2)
    valid = valid & seen
    noise_var = (power / 10.0 ** (jnp.asarray(snr_db, rdt) / 10.0)).astype(rdt)
    y = clean + jnp.sqrt(noise_var).astype(dtype) * _cn(k[8], clean.shape, rdt)

    phi_irs = jnp.matmul(thetas.astype(dtype), cascaded_dictionary(ni, g, dtype), precision=HIGHEST)
    phi_ms = jnp.matmul(pilots.T, jnp.conj(a_m), precision=HIGHEST)
    x = jnp.zeros((g, g, g), dtype)
    casc = jnp.mod(irs_dep - irs_idx, g)
    x = x.at[casc[:, None], ms, bs_idx[None, :]].set((c1 * c2).astype(alpha.dtype) * alpha[:, None] * beta[None, :])
    return IRSProblem(
        y.astype(dtype), (phi_irs, phi_ms, a_b), x.reshape(-1), channels, jnp.conj(a_m),
        noise_var, thetas, pilots, valid,
    )


def channels_from_x(x: jax.Array, phi_irs: jax.Array, ms_dict: jax.Array, bs_dict: jax.Array) -> jax.Array:
    """(K_I, N_B, N_M) channels Ĝ_k[b, m] = Σ x[j, n, l] Φ_IRS[k, j] conj(A_M)[m, n] A_B[b, l].

    x: (G_1 G_2 G_3,) in C-order over (cascaded IRS, MS, BS); phi_irs (K_I, G_1); ms_dict
    (N_M, G_2) = conj(A_M); bs_dict (N_B, G_3) = A_B.
    """
    dims = (phi_irs.shape[1], ms_dict.shape[1], bs_dict.shape[1])
    t = x.reshape(dims)
    return jnp.einsum("kj,mn,bl,jnl->kbm", phi_irs, ms_dict, bs_dict, t, precision=HIGHEST)


def _check_estimate(x_hat, problem: IRSProblem) -> jax.Array:
    n = problem.x.shape[-1]
    x_hat = V.check_array(x_hat, "x_hat", dtype="inexact")
    if x_hat.shape[-1:] != (n,):
        raise ValueError(f"x_hat: expected length {n} (the dictionary size G³), got shape {x_hat.shape}")
    return x_hat


def channel_nmse(x_hat: jax.Array, problem: IRSProblem) -> jax.Array:
    """(K_I,) NMSE ||Ĝ_k − G_k||²_F / ||G_k||²_F per configuration (average it for the paper's metric)."""
    x_hat = _check_estimate(x_hat, problem)
    est = channels_from_x(x_hat.astype(problem.y.dtype), problem.factors[0], problem.ms_dict, problem.factors[2])
    err = jnp.sum(jnp.abs(est - problem.channels) ** 2, axis=(-2, -1))
    ref = jnp.sum(jnp.abs(problem.channels) ** 2, axis=(-2, -1))
    return err / jnp.maximum(ref, jnp.finfo(ref.dtype).tiny)
