"""Scale normalisation shared by every solver of the SBL family (scale equivariance by construction).

With `normalise=True` (a static setting of every solver object and solve function; default False, the
reference algorithm on the data as given) each solver works on normalised data: y / s_y and H_i / s_i
(or H / s_H for a dense dictionary), where every scale is the power of two nearest to the root-mean-square
entry of its array (1 for an all-zero or non-finite array). Results are mapped back: x and μ by s_x = s_y / ∏ s_i, prior
variances by s_x², noise variances by s_y²; a known noise variance is divided by s_y² on the way
in. Powers of two make the normalisation and the mapping back exact in floating point, so

    solver(c y, H) = c solver(y, H)   and   solver(y, c H) = solver(y, H) / c

hold exactly for c a power of two and up to a data scale within a factor sqrt(2) of the unit one
otherwise; nothing the solvers do depends on the absolute scale of the data. The scales are traced
values computed from the data (jit / vmap safe) with zero derivative (piecewise constant).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp

__all__ = ["Scales", "pow2_scale", "scales_of", "normalise"]


class Scales(NamedTuple):
    """y: () s_y; x: () s_x = s_y / prod(s_i). Real, powers of two."""

    y: jax.Array
    x: jax.Array


def pow2_scale(v: jax.Array) -> jax.Array:
    """() real: 2^round(log2(rms(v))), or 1 when v is all zero, empty or not finite."""
    rdt = jnp.finfo(v.dtype).dtype
    mag = jnp.abs(v).astype(rdt)
    peak = jnp.max(mag, initial=0.0)
    ok = jnp.isfinite(peak) & (peak > 0)
    peak = jnp.where(ok, peak, 1)
    rms = peak * jnp.sqrt(jnp.mean((mag / peak) ** 2))  # no overflow in |v|²
    info = jnp.finfo(rdt)
    expo = jnp.clip(jnp.round(jnp.log2(rms)), info.minexp + info.nmant + 2, info.maxexp - 2)
    out = jnp.where(ok, jnp.ldexp(jnp.ones((), rdt), expo.astype(jnp.int32)), 1)
    return jax.lax.stop_gradient(out)


def scales_of(y: jax.Array, H: Any) -> Scales:
    """Scales of y and of a dense H or a tuple of Kronecker factors."""
    s_y = pow2_scale(y)
    s_h = [pow2_scale(f) for f in H] if isinstance(H, (tuple, list)) else [pow2_scale(H)]
    s_dict = s_h[0]
    for s in s_h[1:]:
        s_dict = s_dict * s
    return Scales(s_y, s_y / s_dict)


def normalise(y: jax.Array, H: Any, enabled: bool = True) -> tuple[jax.Array, Any, Scales]:
    """(y / s_y, H / s_H or the factors H_i / s_i, Scales) for solving in normalised units.

    enabled=False (static) returns the data unchanged with unit scales (the solvers' `normalise=False`)."""
    if not enabled:
        one = jnp.ones((), jnp.finfo(y.dtype).dtype)
        return y, (tuple(H) if isinstance(H, (tuple, list)) else H), Scales(one, one)
    sc = scales_of(y, H)
    y_n = y / sc.y.astype(y.dtype)
    if isinstance(H, (tuple, list)):
        H_n: Any = tuple(f / pow2_scale(f).astype(f.dtype) for f in H)
    else:
        H_n = H / pow2_scale(H).astype(H.dtype)
    return y_n, H_n, sc


def scale_gammas(gammas: Sequence[jax.Array], sc: Scales) -> tuple:
    """Prior variances back in data units: the last vector (Kronecker: the last factor) times s_x²."""
    return (*gammas[:-1], gammas[-1] * (sc.x**2).astype(gammas[-1].dtype))
