"""Products of the SAE step that skip work the dense formulation does.

    project(xs, b_pre, w)     (xs - b_pre) w^T, (B, M); gradient of b_pre = -(sum_b g_b) w, an (M,)
                              times (M, d) product instead of the (B, M) times (M, d) product autodiff
                              forms before summing over the batch (the forward is the same product)
    rows_combine(v, idx, w)   sum_j v[:, j] w[idx[:, j]], (B, d): k active latents per row decoded
                              from k rows of w instead of a (B, M) times (M, d) product
    rows_dot(x, idx, w)       x_b . w[idx[b, j]], (B, k): the k selected pre-activations per row

`rows_combine` and `rows_dot` are each other's transposes; their gradients gather and scatter-add
one (B, d) block of rows per selected column (a loop over j, never a (B, k, d) array), so the step
costs O(B k d) past the encoder product. Shapes: xs, x (B, d); w (M, d); v (B, k); idx (B, k) int
with entries in [0, M).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["project", "rows_combine", "rows_dot"]


@jax.custom_vjp
def project(xs: jax.Array, b_pre: jax.Array, w: jax.Array) -> jax.Array:
    """(xs - b_pre) w^T for xs (B, d), b_pre (d,), w (M, d)."""
    return (xs - b_pre[None, :]) @ w.T


def _project_fwd(xs, b_pre, w):
    xc = xs - b_pre[None, :]
    return xc @ w.T, (xc, w)


def _project_bwd(res, g):
    xc, w = res
    # d xs = g w only matters when xs needs a gradient (never in training: it is data); jit drops it
    return g @ w, -(jnp.sum(g, axis=0) @ w), g.T @ xc


project.defvjp(_project_fwd, _project_bwd)


def _rows(w: jax.Array, col: jax.Array) -> jax.Array:
    """w[col] for col (B,) int in [0, M): (B, d)."""
    return w.at[col].get(mode="promise_in_bounds")


def _combine(v, idx, w):
    def body(j, acc):
        return acc + v[:, j, None] * _rows(w, idx[:, j])

    return jax.lax.fori_loop(0, idx.shape[1], body, jnp.zeros((idx.shape[0], w.shape[1]), w.dtype))


def _dots(x, idx, w):
    def body(j, acc):
        return acc.at[:, j].set(jnp.sum(x * _rows(w, idx[:, j]), axis=1))

    return jax.lax.fori_loop(0, idx.shape[1], body, jnp.zeros(idx.shape, w.dtype))


def _scatter(v, x, idx, width):
    """sum over b, j of v[b, j] x[b] added to row idx[b, j] of an (M, d) zero array."""
    def body(j, acc):
        return acc.at[idx[:, j]].add(v[:, j, None] * x, mode="promise_in_bounds")

    return jax.lax.fori_loop(0, idx.shape[1], body, jnp.zeros((width, x.shape[1]), x.dtype))


@jax.custom_vjp
def rows_combine(v: jax.Array, idx: jax.Array, w: jax.Array) -> jax.Array:
    """sum_j v[:, j, None] * w[idx[:, j]]: (B, k), (B, k) int, (M, d) -> (B, d)."""
    return _combine(v, idx, w)


def _combine_fwd(v, idx, w):
    return _combine(v, idx, w), (v, idx, w)


def _combine_bwd(res, g):
    v, idx, w = res
    return _dots(g, idx, w), None, _scatter(v, g, idx, w.shape[0])


rows_combine.defvjp(_combine_fwd, _combine_bwd)


@jax.custom_vjp
def rows_dot(x: jax.Array, idx: jax.Array, w: jax.Array) -> jax.Array:
    """x[b] . w[idx[b, j]]: (B, d), (B, k) int, (M, d) -> (B, k)."""
    return _dots(x, idx, w)


def _dot_fwd(x, idx, w):
    return _dots(x, idx, w), (x, idx, w)


def _dot_bwd(res, g):
    x, idx, w = res
    return _combine(g, idx, w), None, _scatter(g, x, idx, w.shape[0])


rows_dot.defvjp(_dot_fwd, _dot_bwd)
