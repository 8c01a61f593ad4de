"""The shared starting point of the multiplicative-update methods (RRLbS and the NMF baselines).

Every method started from the same key starts from the same point, so a comparison at equal keys
compares the updates only. The start is VCA endmembers with FCLS abundances (or random pixels with
uniform abundances), then *floored*: multiplicative updates cannot move an entry away from exactly
zero, so no abundance or endmember entry may start there.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jsparse.core.validation import as_key, check_choice, check_int, check_positive
from jsparse.unmixing._common import check_image, check_num_endmembers
from jsparse.unmixing.vca import vca_fcls

__all__ = ["INITS", "floor_start", "initial_point"]

INITS = ("vca_screened", "vca", "vca_whitened", "random")
_BANDS = {"vca": "raw", "vca_whitened": "whitened", "vca_screened": "screened"}


def floor_start(Y: jax.Array, M0: jax.Array, A0: jax.Array, init_floor: Any = 1e-2) -> tuple[jax.Array, jax.Array]:
    """Pull a start away from zero: A0 <- (A0 + f) / (1 + R f), M0 <- max(M0, 1e-6 max(Y)).

    The abundance floor keeps each column's sum (1 stays 1); the endmember floor keeps every
    reflectance strictly positive. Shapes: Y (L, N), M0 (L, R), A0 (R, N); jit- and vmap-able.
    """
    R = A0.shape[0]
    f = jnp.asarray(init_floor, Y.dtype)
    A0 = (A0 + f) / (1.0 + R * f)
    M0 = jnp.maximum(M0, 1e-6 * jnp.max(Y))
    return M0, A0


def start_point(Y, R: int, key, init: str = "vca_screened", fcls_iters: int = 200, init_floor: Any = 1e-2):
    """`initial_point` without validation (internal, traced)."""
    N = Y.shape[1]
    if init in _BANDS:
        res = vca_fcls(Y, R, key, bands=_BANDS[init], fcls_iters=fcls_iters, tol=0.0)
        M0, A0 = res.endmembers, res.abundances
    else:
        idx = jax.random.choice(key, N, (R,), replace=False)
        M0 = Y[:, idx]
        A0 = jnp.full((R, N), 1.0 / R, Y.dtype)
    return floor_start(Y, M0, A0, init_floor)


def initial_point(Y, num_endmembers: int, key, *, init: str = "vca_screened", fcls_iters: int = 200,
                  init_floor: float = 1e-2, clip_negative: bool = False) -> tuple[jax.Array, jax.Array]:
    """The floored start that `rrlbs`, `nmf`, `l12_nmf` and `l21_nmf` use for a key.

    Args:
      Y: (L, N) image, bands x pixels, non-negative reflectances.
      num_endmembers: R, with 2 <= R < L and R <= N.
      key: PRNG key or int seed (VCA's random directions, or the random pixels).
      init: "vca_screened" (the default: VCA pixels + FCLS abundances, both on outlier-screened
        bands, `jsparse.unmixing.robust.screening_scales`; identical to "vca" on an image without
        outlier bands), "vca" (plain VCA-FCLS, FCLS with at most `fcls_iters` steps),
        "vca_whitened" (the same on noise-whitened bands) or "random" (random pixels + uniform
        abundances).
      fcls_iters: FCLS iterations. init_floor: the abundance floor f of `floor_start`.
      clip_negative: clip negative reflectances to 0 instead of raising.

    Returns:
      (M0 (L, R), A0 (R, N)) after `floor_start`.
    """
    Y = check_image(Y, clip_negative=clip_negative)
    R = check_num_endmembers(num_endmembers, Y.shape[0])
    if R > Y.shape[1]:
        raise ValueError(f"num_endmembers: the start picks R distinct pixels, got R={R} for {Y.shape[1]} pixels")
    check_choice(init, "init", INITS)
    check_int(fcls_iters, "fcls_iters", minimum=1)
    check_positive(init_floor, "init_floor", allow_zero=True)
    return _initial_point(Y, as_key(key, "key"), init_floor, R=R, init=init, fcls_iters=fcls_iters)


@partial(jax.jit, static_argnames=("R", "init", "fcls_iters"))
def _initial_point(Y, key, init_floor, *, R, init, fcls_iters):
    return start_point(Y, R, key, init, fcls_iters, init_floor)
