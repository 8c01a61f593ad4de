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

The ridge rho = ridge * tr(C) / L keeps the inverse finite for the highly collinear bands of a
hyperspectral image (and in float32); it floors sigma_l at about sqrt(rho), far below the noise
of a corrupted band.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jsparse.core import linalg
from jsparse.unmixing._common import mm

__all__ = ["band_noise", "whitening_scales"]


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
