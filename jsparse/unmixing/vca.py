"""VCA: vertex component analysis (Nascimento & Bioucas-Dias 2005), jit- and vmap-friendly.

Finds R pixels that are (close to) the vertices of the data simplex: project the data to an
R-dimensional subspace, then R times draw a random direction orthogonal to the endmembers found
so far and keep the pixel with the largest |projection|.

Choices (the published MATLAB code's behaviour, adapted to fixed shapes):
  * Both subspace projections are computed and one is selected with `jnp.where` on the
    estimated SNR (no Python branch on data): the projective projection when
    SNR >= 15 + 10 log10(R) dB, else the PCA projection with an appended constant row.
  * The random directions are uniform on [0, 1)^R as in the original; the orthogonal projector
    uses Gram-Schmidt on the chosen vertices (no pseudo-inverse / batched SVD).
  * The endmembers returned are the raw pixels Y[:, indices] (non-negative, a valid NMF start)
    rather than their projections onto the signal subspace.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jsparse.core import linalg
from jsparse.core.validation import as_key, check_int, check_positive
from jsparse.unmixing._common import UnmixingResult, check_image, check_num_endmembers, mm
from jsparse.unmixing.fcls import FCLS, solve_fcls
from jsparse.unmixing.robust import band_scales

__all__ = ["vca", "vca_indices"]


def _top_eigvecs(C, k):
    # eigh returns ascending eigenvalues; keep the k largest (columns, descending).
    _, U = linalg.eigh(C)  # CPU-safe under vmap (see jsparse.core.linalg)
    return jnp.flip(U[:, -k:], axis=1)


def _orth_residual(w, basis, count):
    """w minus its projection on the span of basis[:, :count] (modified Gram-Schmidt, static count)."""
    qs = []
    for i in range(count):
        v = basis[:, i]
        for q in qs:
            v = v - jnp.dot(q, v) * q
        n = jnp.linalg.norm(v)
        qs.append(jnp.where(n > 1e-12, v / jnp.maximum(n, 1e-30), jnp.zeros_like(v)))
    f = w
    for q in qs:
        f = f - jnp.dot(q, f) * q
    return f


@partial(jax.jit, static_argnames=("num_endmembers",))
def vca_indices(Y: jax.Array, num_endmembers: int, key: jax.Array, snr_db=None) -> jax.Array:
    """Traced core: (R,) int32 pixel indices of the VCA vertices (no validation)."""
    L, N = Y.shape
    R = num_endmembers
    dtype = Y.dtype
    y_mean = jnp.mean(Y, axis=1, keepdims=True)
    Y0 = Y - y_mean
    U0 = _top_eigvecs(mm(Y0, Y0.T) / N, R)
    x_p = mm(U0.T, Y0)
    if snr_db is None:
        P_y = jnp.sum(Y * Y) / N
        P_x = jnp.sum(x_p * x_p) / N + jnp.sum(y_mean * y_mean)
        snr = 10.0 * jnp.log10((P_x - R / L * P_y) / (P_y - P_x))
    else:
        snr = jnp.asarray(snr_db, dtype)
    low_snr = snr < 15.0 + 10.0 * jnp.log10(jnp.asarray(R, dtype))  # NaN (noiseless) -> projective

    # Low SNR: PCA on R-1 components plus a constant row.
    x = x_p[: R - 1]
    c = jnp.sqrt(jnp.max(jnp.sum(x * x, axis=0)))
    y_low = jnp.concatenate([x, jnp.full((1, N), c, dtype)], axis=0)
    # High SNR: projective projection onto the R-dimensional signal subspace.
    U1 = _top_eigvecs(mm(Y, Y.T) / N, R)
    xp1 = mm(U1.T, Y)
    u = jnp.mean(xp1, axis=1, keepdims=True)
    den = jnp.sum(xp1 * u, axis=0, keepdims=True)
    y_high = xp1 / jnp.where(jnp.abs(den) > 0, den, 1.0)
    y = jnp.where(low_snr, y_low, y_high)

    keys = jax.random.split(key, R)
    basis = jnp.zeros((R, R), dtype).at[R - 1, 0].set(1.0)
    idx = []
    for i in range(R):
        w = jax.random.uniform(keys[i], (R,), dtype)
        # Before the first pick, the "found" set is the unit vector e_R (as in the original).
        f = _orth_residual(w, basis, max(i, 1))
        f = f / jnp.maximum(jnp.linalg.norm(f), jnp.finfo(dtype).tiny)
        v = mm(f[None, :], y)[0]
        k = jnp.argmax(jnp.abs(v)).astype(jnp.int32)
        idx.append(k)
        basis = basis.at[:, i].set(y[:, k])
    return jnp.stack(idx)


def vca_fcls(Y, R: int, key, *, bands: str = "raw", snr_db=None, fcls_iters: int = 500,
             tol: float = 1e-7) -> UnmixingResult:
    """VCA-FCLS without validation (internal): raw VCA pixels (L, R) and FCLS abundances (R, N).

    bands "whitened" / "screened": VCA and FCLS see the rows s_l * y^l (`robust.band_scales`), so
    corrupted bands neither choose the pixels nor drive the abundances; M is still raw pixels.
    """
    Yw = Y if bands == "raw" else band_scales(Y, bands)[:, None] * Y
    idx = vca_indices(Yw, R, key, snr_db)
    res = solve_fcls(FCLS(max_iters=fcls_iters, tol=float(tol)), Yw, Yw[:, idx])
    return res._replace(endmembers=Y[:, idx])


def vca(Y, num_endmembers: int, *, key, snr_db=None, fcls_iters: int = 500, tol: float = 1e-7,
        whiten: bool = False, screen: bool = False, clip_negative: bool = False) -> UnmixingResult:
    """VCA endmembers followed by FCLS abundances ("VCA-FCLS").

    Args:
      Y: (L, N) image, bands x pixels, non-negative reflectances.
      num_endmembers: R, with 2 <= R < L and R <= N.
      key: PRNG key (or int seed) for VCA's random directions (results vary with it: report mean +/- std).
      snr_db: known SNR in dB, or None to estimate it as VCA does.
      fcls_iters, tol: budget and tolerance of the FCLS solve.
      whiten: run VCA and FCLS on noise-whitened bands (`robust.whitening_scales`: each band
        scaled by median noise / its HySime noise estimate), so that corrupted bands neither pick
        the vertices nor drive the abundances. The endmembers are still the raw pixels.
      screen: run VCA and FCLS on outlier-screened bands (`robust.screening_scales`: only bands
        whose noise exceeds 50x the median are scaled down, steeply; an image without such bands
        gives exactly the plain result). The start of `rrlbs` and the baselines by default.
      clip_negative: clip negative reflectances to 0 instead of raising.

    Returns:
      UnmixingResult: endmembers = Y[:, vertices] (L, R); FCLS abundances (R, N); zero guidance;
      objective = the FCLS objective trace.
    """
    Y = check_image(Y, clip_negative=clip_negative)
    R = check_num_endmembers(num_endmembers, Y.shape[0])
    if R > Y.shape[1]:
        raise ValueError(f"num_endmembers: VCA picks R distinct pixels, got R={R} for {Y.shape[1]} pixels")
    key = as_key(key, "key")
    check_int(fcls_iters, "fcls_iters", minimum=1)
    check_positive(tol, "tol", allow_zero=True)
    if snr_db is not None and not np.isfinite(np.asarray(snr_db)).all():
        raise ValueError(f"snr_db: expected a finite number of dB or None, got {snr_db!r}")
    for flag, name in ((whiten, "whiten"), (screen, "screen")):
        if not isinstance(flag, (bool, np.bool_)):
            raise ValueError(f"{name}: expected a bool, got {flag!r}")
    if whiten and screen:
        raise ValueError("screen: choose whiten or screen, not both")
    bands = "whitened" if whiten else "screened" if screen else "raw"
    return vca_fcls(Y, R, key, bands=bands, snr_db=snr_db, fcls_iters=fcls_iters, tol=tol)

