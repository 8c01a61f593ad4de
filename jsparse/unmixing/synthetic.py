"""Synthetic scenes with a controlled per-pixel mixing level, noise at a given SNR, and outlier channels.

Generator (all JAX, jit/vmap-able for a fixed size):
  * Endmembers: given (e.g. a dataset's ground truth) or `smooth_endmembers` (sums of Gaussian
    bumps on a slope: reflectance-like, non-negative, well separated).
  * Abundances: each pixel has a dominant endmember k_n (argmax of R spatially smoothed random
    fields, so the classes form regions) and a mixing level m_n in [0, max_mixing] (a smoothed
    field, so mixing also varies smoothly); a fraction `pure_fraction` of the pixels is exactly
    pure (m_n = 0). Then a_n = (1 - m_n) e_{k_n} + m_n Dirichlet(alpha 1_R).
  * Noise: white Gaussian, variance = mean(Y_clean^2) / 10^(snr_db / 10).
  * Outliers (`corrupt_bands`): a fraction of the bands, scattered at random or one contiguous
    block, are corrupted: heavy Gaussian noise clipped at 0 ("noise") or unclipped ("gaussian",
    the only kind that leaves negative values), replaced by uniform noise ("uniform"), by zeros
    ("zero") or by a constant level ("constant"), shifted by a constant ("offset"), or striped
    ("stripes").
  * `CORRUPTION_SUITE`: the kinds and strengths of the robustness study (experiments/unmixing/suite.py).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jsparse.core.validation import as_key

__all__ = ["SyntheticScene", "smooth_endmembers", "make_scene", "corrupt_bands", "OUTLIER_KINDS", "LAYOUTS",
           "CORRUPTION_SUITE"]

OUTLIER_KINDS = ("noise", "stripes", "zero", "uniform", "constant", "offset", "gaussian")
LAYOUTS = ("scattered", "contiguous")
# (label, kind, strength in units of max Y): the corruption types of the robustness study.
CORRUPTION_SUITE = (
    ("uniform 3x", "uniform", 3.0),          # replaced by U(0, 3 max Y)
    ("zero", "zero", 0.0),                   # blank band
    ("constant", "constant", 1.0),           # stuck at max Y
    ("offset", "offset", 1.0),               # Y + max Y
    ("gaussian clipped", "noise", 0.5),      # Y + N(0, (0.5 max Y)^2), clipped at 0
    ("gaussian unclipped", "gaussian", 0.5),  # the same without the clip (negative values)
)


class SyntheticScene(NamedTuple):
    """Y (L, N) observed; endmembers (L, R); abundances (R, N); mixing (N,) = 1 - max_k A_kn;
    outlier_bands (L,) bool mask of corrupted bands. Pixel order is column-major over `shape`."""

    Y: jax.Array
    endmembers: jax.Array
    abundances: jax.Array
    mixing: jax.Array
    outlier_bands: jax.Array


def smooth_endmembers(key, bands: int, num_endmembers: int, dtype=jnp.float32) -> jax.Array:
    """(bands, R) smooth, non-negative, reflectance-like spectra in about [0.05, 0.9]; key: PRNG key or int seed."""
    x = jnp.linspace(0.0, 1.0, bands, dtype=dtype)[:, None]
    k1, k2, k3, k4 = jax.random.split(as_key(key, "key"), 4)
    R = num_endmembers
    centers = jax.random.uniform(k1, (4, R), dtype)
    widths = jax.random.uniform(k2, (4, R), dtype, 0.05, 0.25)
    heights = jax.random.uniform(k3, (4, R), dtype, 0.1, 0.5)
    slope = jax.random.uniform(k4, (1, R), dtype, -0.3, 0.3)
    bumps = jnp.sum(heights[None] * jnp.exp(-0.5 * ((x[:, :, None] - centers[None]) / widths[None]) ** 2), axis=1)
    return jnp.clip(0.3 + slope * (x - 0.5) + bumps, 0.05, 0.9)


def _smooth_field(key, shape, count, width, dtype):
    """(count, H, W) Gaussian-smoothed white noise fields (circular FFT filter), standardised."""
    H, W = shape
    z = jax.random.normal(key, (count, H, W), dtype)
    fy = jnp.fft.fftfreq(H)[:, None]
    fx = jnp.fft.fftfreq(W)[None, :]
    filt = jnp.exp(-2.0 * (jnp.pi * width) ** 2 * (fy**2 + fx**2))
    Z = jnp.fft.fft2(z)
    # The standard promotion of (complex, real), written out for strict dtype promotion.
    wide = jnp.dtype(jnp.float64) in (jnp.finfo(Z.dtype).dtype, filt.dtype)
    ctype = jnp.complex128 if wide else jnp.complex64
    out = jnp.real(jnp.fft.ifft2(Z.astype(ctype) * filt[None].astype(ctype))).astype(dtype)
    out = out - jnp.mean(out, axis=(1, 2), keepdims=True)
    return out / jnp.maximum(jnp.std(out, axis=(1, 2), keepdims=True), 1e-12)


def _bad_mask(key, L, num_bad, layout):
    if layout == "contiguous":
        start = jax.random.randint(key, (), 0, L - num_bad + 1)
        band = jnp.arange(L)
        return (band >= start) & (band < start + num_bad)
    return jnp.zeros((L,), bool).at[jax.random.permutation(key, L)[:num_bad]].set(True)


@partial(jax.jit, static_argnames=("shape", "num_bad", "kind", "layout"))
def _corrupt(key, Y, *, shape, num_bad, kind, strength, layout="scattered"):
    L, N = Y.shape
    k1, k2, k3 = jax.random.split(key, 3)
    bad = _bad_mask(k1, L, num_bad, layout)
    scale = strength * jnp.max(Y)
    if kind in ("noise", "gaussian"):
        bad_vals = Y + scale * jax.random.normal(k2, Y.shape, Y.dtype)
        if kind == "gaussian":
            return jnp.where(bad[:, None], bad_vals, Y), bad
    elif kind == "uniform":
        bad_vals = scale * jax.random.uniform(k2, Y.shape, Y.dtype)
    elif kind == "constant":
        bad_vals = jnp.full_like(Y, scale)
    elif kind == "offset":
        bad_vals = Y + scale
    elif kind == "stripes":
        H, W = shape
        cols = jax.random.bernoulli(k2, 0.3, (L, W)).astype(Y.dtype)  # striped image columns per band
        offs = scale * jax.random.uniform(k3, (L, 1), Y.dtype, 0.5, 1.0)
        stripes = jnp.repeat(cols, H, axis=1)  # column-major: pixel p = r + c*H lies in column c
        bad_vals = Y + offs * stripes
    else:
        bad_vals = jnp.zeros_like(Y)
    return jnp.where(bad[:, None], jnp.maximum(bad_vals, 0.0), Y), bad


def corrupt_bands(key, Y, fraction: float, *, shape, kind: str = "noise", strength: float = 0.5,
                  layout: str = "scattered"):
    """Corrupt round(fraction * L) bands of a (L, N) image.

    Args:
      key: PRNG key or int seed. Y: (L, N) image. fraction: share of bands to corrupt, in [0, 1).
      shape: (nRow, nCol) of the image (for stripes; column-major pixel order).
      kind: "noise" (Y + Gaussian noise, std = strength * max Y, clipped at 0), "gaussian" (the same,
        not clipped), "uniform" (replaced by U(0, strength * max Y)), "constant" (replaced by
        strength * max Y), "offset" (Y + strength * max Y), "zero" (blank band) or "stripes" (30 %
        of image columns offset by U(0.5, 1) * strength * max Y).
      layout: "scattered" (bands drawn at random) or "contiguous" (one block at a random start).
    Returns:
      (Y_corrupted (L, N), non-negative except for kind "gaussian"; mask (L,) bool of corrupted bands).
    """
    if kind not in OUTLIER_KINDS:
        raise ValueError(f"kind: expected one of {OUTLIER_KINDS}, got {kind!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
    if not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"fraction: expected a value in [0, 1), got {fraction!r}")
    L, N = Y.shape
    if tuple(shape)[0] * tuple(shape)[1] != N:
        raise ValueError(f"shape: {tuple(shape)} does not match the {N} pixels of Y")
    num_bad = int(round(float(fraction) * L))
    return _corrupt(as_key(key, "key"), jnp.asarray(Y), shape=tuple(int(s) for s in shape), num_bad=num_bad, kind=kind,
                    strength=strength, layout=layout)


def make_scene(key, endmembers, shape, *, snr_db=30.0, max_mixing=0.8, pure_fraction=0.1, alpha=1.0,
               smoothness=4.0, outlier_fraction=0.0, outlier_kind="noise", outlier_strength=0.5) -> SyntheticScene:
    """Synthetic image with the given endmembers; see the module docstring.

    Args:
      key: PRNG key or int seed. endmembers: (L, R) non-negative spectra (dtype sets the scene's dtype).
      shape: (nRow, nCol) image size (static). snr_db: noise level in dB (None = noiseless).
      max_mixing: largest per-pixel mixing level m_n. pure_fraction: share of exactly pure pixels.
      alpha: Dirichlet concentration of the mixed part. smoothness: spatial correlation (pixels).
      outlier_fraction, outlier_kind, outlier_strength: see `corrupt_bands`.
    """
    M = jnp.asarray(endmembers)
    if M.ndim != 2 or M.shape[1] < 2:
        raise ValueError(f"endmembers: expected a (bands, R >= 2) array, got shape {M.shape}")
    H, W = (int(s) for s in shape)
    N = H * W
    R = M.shape[1]
    dtype = M.dtype
    k_cls, k_mix, k_pure, k_dir, k_noise, k_out = jax.random.split(as_key(key, "key"), 6)
    fields = _smooth_field(k_cls, (H, W), R, smoothness, dtype)
    # Column-major flattening: transpose then ravel (pixel p = r + c*H).
    cls = jnp.argmax(jnp.transpose(fields, (0, 2, 1)).reshape(R, N), axis=0)
    mfield = _smooth_field(k_mix, (H, W), 1, smoothness, dtype)[0].T.reshape(N)
    m = max_mixing * jax.nn.sigmoid(1.5 * mfield)
    m = jnp.where(jax.random.uniform(k_pure, (N,), dtype) < pure_fraction, 0.0, m)
    mix = jax.random.dirichlet(k_dir, jnp.full((R,), alpha, dtype), (N,)).T.astype(dtype)
    A = (1.0 - m)[None, :] * jax.nn.one_hot(cls, R, dtype=dtype).T + m[None, :] * mix
    Y = jnp.matmul(M, A, precision=jax.lax.Precision.HIGHEST)
    if snr_db is not None:
        sigma = jnp.sqrt(jnp.mean(Y * Y) / 10.0 ** (snr_db / 10.0))
        Y = Y + sigma * jax.random.normal(k_noise, Y.shape, dtype)
        Y = jnp.maximum(Y, 0.0)
    bad = jnp.zeros((Y.shape[0],), bool)
    if outlier_fraction > 0:
        Y, bad = corrupt_bands(k_out, Y, outlier_fraction, shape=(H, W), kind=outlier_kind,
                               strength=outlier_strength)
    return SyntheticScene(Y, M, A, 1.0 - jnp.max(A, axis=0), bad)
