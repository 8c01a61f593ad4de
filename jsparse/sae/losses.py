"""The training loss of one SAE step, in two formulations with the same value and gradients.

    loss = 1/2 mean_b ||x_b c - x_hat_b c||^2 + the method's penalty (normalised units)

"plain": the model's forward pass as written (codes (B, M) times the decoder), differentiated
  by autodiff. "fast": the same loss with less work: the pre-bias gradient without a (B, M) x
  (M, d) product (`kernels.project`), and for TopK the k selected pre-activations and the decoder
  taken row by row (`kernels.rows_dot`, `kernels.rows_combine`), so past the encoder product the
  step costs O(B k d) instead of four (B, M) x (M, d) products. The two agree to rounding (tests:
  1e-5 in float32, 1e-10 in float64) but not bit for bit, so "auto" keeps "plain" on small
  problems (below FAST_MIN_WORK multiply-adds per product, where the saving is small) and every
  earlier result there stays bit-identical.

Both return (loss, aux): aux holds mse, fvu, fired (M,) bool (latents active in the batch), l0
(mean active latents per sample), codes ((B, M), or None on the sparse TopK path) and z (the
stop-gradient pre-activations, (B, M)).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jsparse.core import validation as val

from . import kernels
from .model import SAE, present

__all__ = ["FORMULATIONS", "FAST_MIN_WORK", "SPARSE_MAX_DENSITY", "resolve_formulation", "loss"]

FORMULATIONS = ("auto", "plain", "fast")
FAST_MIN_WORK = 2**28  # B * M * d; the toy problems of docs/sae.md are below it (512 * 1024 * 128 = 2^26)
SPARSE_MAX_DENSITY = 1 / 8  # TopK decodes row by row when k <= M / 8
_AUXK = ("topk", "batchtopk")


def resolve_formulation(formulation: str, batch: int, width: int, d: int) -> str:
    """"plain" or "fast" for `formulation` in FORMULATIONS at this problem size (ValueError otherwise)."""
    val.check_choice(formulation, "formulation", FORMULATIONS)
    if formulation != "auto":
        return formulation
    return "fast" if batch * width * d >= FAST_MIN_WORK else "plain"


def _finish(part, m: SAE, xn, rec, dead, z_grad, penalty_args, **aux):
    """mse, fvu and the method's penalty (given the pre-activations z_grad (B, M)) from the reconstruction
    rec (B, d) (normalised units)."""
    b_pre = m.b_pre[...][None, :] if m.b_pre is not None else 0
    resid = xn - (rec + b_pre)
    mse = 0.5 * jnp.mean(jnp.sum(resid**2, axis=1))
    extra = part.penalty(m, aux["codes"], z_grad, resid, dead, **penalty_args)
    total = mse if extra is None else mse + extra
    var = jnp.sum((xn - jnp.mean(xn, axis=0, keepdims=True)) ** 2)
    return total, dict(aux, mse=mse, fvu=jnp.sum(resid**2) / var)


def _dense(part, m: SAE, x, dead, fast: bool):
    xn = x * m.input_scale[...]
    u = kernels.project(xn, m.b_pre[...], m.w_enc[...]) if fast and m.b_pre is not None else m.projections(x)
    z = m.pre_activations(x, u=u)
    codes = m.activate(u, train=True)
    active = codes > 0
    # the TopK family's AuxK: dense codes times the decoder instead of gathering rows (baselines.aux_loss)
    args = dict(pick=lambda ix: jnp.take_along_axis(z, ix, axis=1)) if fast and m.activation in _AUXK else {}
    return _finish(part, m, xn, codes @ m.decoder_weight(), dead, z, args, codes=codes, z=jax.lax.stop_gradient(z),
                   fired=jnp.any(active, axis=0), l0=jnp.mean(jnp.sum(active, axis=1).astype(x.dtype)))


def _sparse_topk(part, m: SAE, x, dead):
    """TopK with k rows per sample: top_k on the stop-gradient pre-activations picks idx (B, k); the
    picked values are recomputed differentiably from k encoder rows and decoded from k decoder rows."""
    xn = x * m.input_scale[...]
    xc = xn - m.b_pre[...][None, :] if m.b_pre is not None else xn
    w_enc, b_enc = m.w_enc[...], present(m.b_enc, "b_enc")[...]
    z = jax.lax.stop_gradient(xc @ w_enc.T + b_enc[None, :])
    _, idx = jax.lax.top_k(z, present(m.k, "k"))

    def pick(ix):
        return kernels.rows_dot(xc, ix, w_enc) + b_enc.at[ix].get(mode="promise_in_bounds")

    vals = jax.nn.relu(pick(idx))
    active = vals > 0
    fired = jnp.zeros((m.width,), jnp.int32).at[idx.reshape(-1)].max(active.reshape(-1).astype(jnp.int32)) > 0
    rec = kernels.rows_combine(vals, idx, m.decoder_weight())
    return _finish(part, m, xn, rec, dead, z, dict(pick=pick), codes=None, z=z, fired=fired,
                   l0=jnp.mean(jnp.sum(active, axis=1).astype(x.dtype)))


def loss(graphdef, part, params, rest, x, dead, formulation: str = "plain"):
    """The step's loss and by-products (module docstring) for nnx state (params, rest), batch x
    (B, d), dead (M,) bool; formulation "plain" or "fast" (see `resolve_formulation`)."""
    m = nnx.merge(graphdef, params, rest)
    fast = formulation == "fast"
    if fast and m.activation == "topk" and present(m.k, "k") <= SPARSE_MAX_DENSITY * m.width:
        return _sparse_topk(part, m, x, dead)
    return _dense(part, m, x, dead, fast)
