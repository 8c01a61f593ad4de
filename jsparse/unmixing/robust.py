"""Per-band noise estimate and band weights for a robust (outlier-channel-aware) initialisation.

VCA and FCLS use a squared loss, so a few heavily corrupted bands dominate both the signal
subspace VCA projects on and the FCLS fit: the VCA-FCLS start of every NMF-family method is then
already wrong (docs/unmixing.md, "Diagnosis"). The fix used by `init="vca_whitened"`:

* `band_noise`: the residual RMS of regressing each band on all the others (the HySime noise
  estimate, Bioucas-Dias & Nascimento 2008). With C = Y Y^T / N, the residual energy of band l
  is 1 / (C^-1)_ll (Schur complement), so one eigendecomposition of the L x L matrix gives all
  L regressions. A corrupted band cannot be predicted from the others, so its residual is two to
  three orders of magnitude above the median (Samson, Jasper with 10 % noisy bands).
* `whitening_scales`: s_l = median(sigma) / sigma_l, i.e. rows scaled to equal noise level
  (noise whitening). Corrupted bands get s_l ~ 1e-3 and stop driving VCA and FCLS; clean bands
  keep comparable weights.
* `screening_scales` (the default start, `init="vca_screened"`): s_l = min(1, kappa median(sigma)
  / sigma_l)^power. Only bands whose noise is more than kappa (50) times the median are scaled
  down, and then steeply (power 4: the scaled noise s_l sigma_l <= kappa median(sigma) and falls as
  sigma_l grows). On an image without such bands every s_l is exactly 1, so the start is the
  plain VCA-FCLS start bit for bit.

The ridge rho = ridge * tr(C) / L keeps the inverse finite for the highly collinear bands of a
hyperspectral image (and in float32); it floors sigma_l at about sqrt(rho), far below the noise
of a corrupted band.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jsparse.core import linalg
from jsparse.unmixing._common import mm

__all__ = ["band_noise", "whitening_scales", "screening_scales", "band_scales", "BAND_MODES"]

BAND_MODES = ("raw", "whitened", "screened")  # how VCA-FCLS weights the bands


def _default_ridge(dtype) -> float:
    return 1e-8 if jnp.dtype(dtype) == jnp.float64 else 1e-5


def band_noise(Y: jax.Array, ridge=None) -> jax.Array:
    """(L,) residual RMS per band of the regression of band l on all other bands (HySime).

    Args:
      Y: (L, N) image. ridge: relative ridge (None: 1e-8 for float64, 1e-5 for float32).
    Returns:
      (L,) non-negative, in the units of Y.
    """
    L, N = Y.shape
    C = mm(Y, Y.T) / N  # HIGHEST precision: feeds an eigendecomposition
    rho = (_default_ridge(Y.dtype) if ridge is None else ridge) * jnp.trace(C) / L
    rho = jnp.maximum(rho, jnp.finfo(Y.dtype).tiny)
    w, V = linalg.eigh(C)  # CPU-safe under vmap (jsparse.core.linalg)
    inv_diag = jnp.sum(V * V / (jnp.maximum(w, 0.0) + rho)[None, :], axis=1)
    return jnp.sqrt(1.0 / inv_diag)


def whitening_scales(Y: jax.Array, ridge=None) -> jax.Array:
    """(L,) row scales median(sigma) / sigma_l that equalise the per-band noise level."""
    sigma = band_noise(Y, ridge)
    return (jnp.median(sigma) / sigma).astype(Y.dtype)


def screening_scales(Y: jax.Array, kappa: float = 50.0, power: float = 4.0, ridge=None) -> jax.Array:
    """(L,) band scales in [0, 1]: min(1, kappa median(sigma) / sigma_l)^power (sigma = `band_noise`).

    1 for every band whose HySime noise is at most kappa times the median (clean Samson: <= 45,
    Jasper Ridge: <= 15); a band replaced by noise (ratios 180-2000 on those scenes) gets
    s_l <= 1e-2. Zero or constant bands are predictable from the others and keep s_l = 1 (they
    carry no misleading variation for VCA).
    """
    sigma = band_noise(Y, ridge)
    ratio = kappa * jnp.median(sigma) / jnp.maximum(sigma, jnp.finfo(Y.dtype).tiny)
    return (jnp.minimum(1.0, ratio) ** power).astype(Y.dtype)


def band_scales(Y: jax.Array, mode: str) -> jax.Array:
    """(L,) row scales of VCA-FCLS for `mode` in BAND_MODES ("raw": ones)."""
    if mode == "whitened":
        return whitening_scales(Y)
    if mode == "screened":
        return screening_scales(Y)
    return jnp.ones((Y.shape[0],), Y.dtype)
