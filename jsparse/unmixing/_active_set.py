"""One primal active-set step of the per-pixel FCLS problem, vectorised over pixels.

For every pixel n (a column of B = M^T Y):  min_a 1/2 a^T G a - b^T a  s.t.  a >= 0, 1^T a = 1,
with G = M^T M (R, R) shared by all pixels. The working set W (R, N) holds the entries fixed at
zero; the step solves the equality-constrained problem on the free face, moves towards its
solution until an entry would turn negative (that entry joins W), and, when the face solution is
reached, releases the entry of W with the most negative KKT multiplier. A pixel is done when the
face solution is reached and no multiplier is negative. With R + 1 working-set changes per pixel
at most in typical scenes, a few steps replace hundreds of projected-gradient iterations, and the
count does not grow with the conditioning of M.

The face systems carry rho 1 1' (zero on the constraint, so the solution is unchanged; the Gram
form about the mean endmember is singular along 1 without it). They are eliminated in plain
array operations over the pixel axis (no batched LAPACK call, so no CPU thread-pool stalls under
vmap; R is small); directions of near-zero curvature (repeated endmembers) are held at zero
rather than amplifying rounding noise (`_eliminate`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jsparse.unmixing._common import mm

__all__ = ["face_solution", "active_set_step"]


def _eliminate(H: jax.Array, rhs: jax.Array) -> jax.Array:
    """Solve H[:, :, n] x[:, :, n] = rhs[:, :, n] for every n; H (R, R, N) symmetric positive semidefinite,
    rhs (R, K, N). Gauss-Jordan without pivoting (stable for SPD matrices); an unknown whose pivot
    falls below sqrt(eps) times its diagonal entry (a direction of H's near-null space, e.g. a
    repeated endmember) is set to 0 and not eliminated, so rounding noise is never amplified by
    more than 1/sqrt(eps) and a singular H still gives a solution."""
    R = H.shape[0]
    rows = jnp.arange(R)[:, None]
    diag0 = jnp.diagonal(H, axis1=0, axis2=1).T  # (R, N)
    tiny = jnp.sqrt(jnp.finfo(H.dtype).eps) * diag0 + jnp.finfo(H.dtype).tiny

    def body(k, carry):
        H, rhs, dropped = carry
        pivot_row = jax.lax.dynamic_index_in_dim(H, k, 0, keepdims=False)  # (R, N)
        pivot = jax.lax.dynamic_index_in_dim(pivot_row, k, 0, keepdims=False)  # (N,)
        drop = pivot <= jax.lax.dynamic_index_in_dim(tiny, k, 0, keepdims=False)
        col = jax.lax.dynamic_index_in_dim(H, k, 1, keepdims=False)  # (R, N)
        zero = jnp.zeros((), H.dtype)
        factor = jnp.where((rows == k) | drop[None, :], zero, col / jnp.where(drop, 1.0, pivot)[None, :])
        rk = jax.lax.dynamic_index_in_dim(rhs, k, 0, keepdims=False)  # (K, N)
        dropped = dropped | ((rows == k) & drop[None, :])
        return H - factor[:, None, :] * pivot_row[None], rhs - factor[:, None, :] * rk[None], dropped

    H, rhs, dropped = jax.lax.fori_loop(0, R, body, (H, rhs, jnp.zeros(diag0.shape, bool)))
    diag = jnp.diagonal(H, axis1=0, axis2=1).T  # (R, N)
    x = rhs / jnp.where(dropped, 1.0, diag)[:, None, :]
    return jnp.where(dropped[:, None, :], jnp.zeros((), H.dtype), x)


def face_solution(G: jax.Array, B: jax.Array, W: jax.Array) -> jax.Array:
    """(R, N) minimiser of 1/2 a'Ga - b'a over {a_W = 0, 1'a = 1}, per pixel (a minimiser when G is singular)."""
    F = (~W).astype(B.dtype)
    eye = jnp.eye(G.shape[0], dtype=B.dtype)[:, :, None]
    # rho 1 1' on the face adds rho/2 (1'a - 1)^2, zero on the constraint: the solution is the same,
    # and G may be singular along 1 (the Gram form about the mean endmember is).
    rho = jnp.max(jnp.diagonal(G))
    rho = jnp.where(rho > 0, rho, jnp.ones((), G.dtype))  # G = 0 (identical endmembers): any scale
    H = (G[:, :, None] + rho) * F[:, None, :] * F[None, :, :] + eye * (1.0 - F)[None, :, :]
    x = _eliminate(H, jnp.stack([F * (B + rho), F], axis=1))  # (R, 2, N)
    x1, x2 = x[:, 0], x[:, 1]
    mu = (jnp.sum(x1, axis=0) - 1.0) / jnp.sum(x2, axis=0)  # 1'x2 = F'H^{-1}F > 0: one entry is free
    return x1 - mu[None, :] * x2


def _first_min(values: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(min over axis 0, one-hot (R, N) of its first position)."""
    idx = jnp.argmin(values, axis=0)
    return jnp.min(values, axis=0), jnp.arange(values.shape[0])[:, None] == idx[None, :]


def active_set_step(G, B, A, W, done, tol_kkt):
    """One step for every pixel not yet done -> (A, W, done), each (R, N) or (N,)."""
    zero = jnp.zeros((), A.dtype)
    P = face_solution(G, B, W) - A
    ratios = jnp.where(~W & (P < 0), A / jnp.where(P < 0, -P, 1.0), jnp.inf)
    alpha, block_at = _first_min(ratios)
    # A face solution with an entry at zero up to rounding (a pure pixel) gives alpha = 1 - O(eps):
    # take the full step (clamped, renormalised) so rounding does not decide the step count.
    blocked = alpha < 1 - 1024 * jnp.finfo(A.dtype).eps
    hit = block_at & blocked[None, :]
    A_new = jnp.where(W | hit, zero, jnp.maximum(A + jnp.where(blocked, alpha, 1.0)[None, :] * P, zero))
    A_new = A_new / jnp.sum(A_new, axis=0, keepdims=True)
    W_new = W | hit
    # KKT at the face solution: g + mu 1 = lambda, lambda >= 0 on W, 0 on the free entries.
    g = mm(G, A_new) - B
    free = (~W_new).astype(A.dtype)
    mu = -jnp.sum(free * g, axis=0) / jnp.maximum(jnp.sum(free, axis=0), 1.0)
    lam_min, release_at = _first_min(jnp.where(W_new, g + mu[None, :], jnp.inf))
    release = ~blocked & (lam_min < -tol_kkt)
    W_new = W_new & ~(release_at & release[None, :])
    now_done = ~blocked & ~release
    keep = done[None, :]
    return jnp.where(keep, A, A_new), jnp.where(keep, W, W_new), done | now_done
