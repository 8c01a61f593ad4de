"""The baseline methods as values: TopK and BatchTopK (+ AuxK), ReLU + L1, JumpReLU + L0."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from jsparse.core import validation as val

from . import gba
from .method_base import MethodBase, check_number, set_field
from .model import SAE, step_fn

__all__ = ["TopK", "BatchTopK", "ReLUL1", "JumpReLU", "aux_loss"]


def aux_loss(model: SAE, z, resid, dead, aux_k: int, pick=None):
    """AuxK: reconstruct the (stop-gradient) residual (B, d) from the top aux_k dead latents of z (B, M).

    scale * 1/2 mean_b ||resid_b - sum_{j in top aux_k dead} relu(z_bj) D_j||^2, scale = min(#dead / aux_k, 1).
    Without `pick`: the first release's formulation, kept bit for bit for small problems (the
    selected decoder rows gathered into a (B, aux_k, d) array, on every step). With `pick` (idx
    (B, aux_k) -> z at idx, differentiable): computed only when some latent is dead (`lax.cond` on
    the traced flag, no host sync; otherwise the term is 0 with zero gradients, as the formula gives
    with scale 0), as the dense (B, M) code array times the decoder: one product, no gather."""
    w = model.decoder_weight()

    def on(_):
        zd = jnp.where(dead[None, :], z, -jnp.inf)
        vals, idx = jax.lax.top_k(zd, aux_k)
        valid = jnp.isfinite(jax.lax.stop_gradient(vals))
        if pick is None:
            rec = jnp.einsum("bk,bkd->bd", jnp.where(valid, jax.nn.relu(vals), 0), w[idx])
        else:
            acts = jnp.where(valid, jax.nn.relu(pick(idx)), 0)
            rec = jnp.zeros(z.shape, z.dtype).at[jnp.arange(z.shape[0])[:, None], idx].set(acts) @ w
        scale = jnp.minimum(jnp.sum(dead).astype(z.dtype) / aux_k, 1.0)
        return scale * 0.5 * jnp.mean(jnp.sum((resid - rec) ** 2, axis=1))

    if pick is None:  # the first release's step, bit for bit: computed on every step
        return on(None)
    return jax.lax.cond(jnp.any(dead), on, lambda _: jnp.zeros((), z.dtype), None)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TopK(MethodBase):
    """Exactly k active latents per sample, untied, + AuxK (Gao et al.): `aux_coef` times the
    residual's reconstruction from the top `aux_k` dead latents (default d // 2, at most width)."""

    k: int = 32
    aux_k: int | None = None
    aux_coef: float = 1 / 32
    name: ClassVar[str] = "topk"
    activation: ClassVar[str] = "topk"

    def __post_init__(self):
        super().__post_init__()
        set_field(self, "k", val.check_int(self.k, "k", minimum=1))
        if self.aux_k is not None:
            set_field(self, "aux_k", val.check_int(self.aux_k, "aux_k", minimum=1))
        check_number(self, "aux_coef", sign="0+")

    def resolve(self, d: int, width: int) -> TopK:
        val.check_int(self.k, "k", minimum=1, maximum=width)
        aux_k = max(d // 2, 1) if self.aux_k is None else self.aux_k
        return dataclasses.replace(self, aux_k=min(aux_k, width))

    def model_options(self) -> dict[str, Any]:
        return dict(super().model_options(), k=self.k)

    def penalty(self, m: SAE, codes, z, resid, dead, pick=None) -> jax.Array | None:
        if self.aux_coef <= 0:
            return None
        assert self.aux_k is not None, "resolve() sets aux_k"
        return self.aux_coef * aux_loss(m, z, jax.lax.stop_gradient(resid), dead, self.aux_k, pick)

    def legacy_options(self) -> dict[str, Any]:
        return dict(k=self.k, aux_coef=self.aux_coef, aux_k=self.aux_k)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchTopK(TopK):
    """k * B largest codes per batch (k a per-sample average) + AuxK; inference threshold = EMA
    (rate `threshold_rate`) of the smallest kept value, set after every step."""

    threshold_rate: float = 0.01
    name: ClassVar[str] = "batchtopk"
    activation: ClassVar[str] = "batchtopk"

    def __post_init__(self):
        super().__post_init__()
        check_number(self, "threshold_rate")
        val.check_in_range(self.threshold_rate, "threshold_rate", 0.0, 1.0)

    def post_step(self, m: SAE, stats: gba.WindowStats, targets, step, codes, z) -> gba.WindowStats:
        threshold = m.threshold
        assert threshold is not None, "a BatchTopK SAE has an inference threshold"
        kept_min = jnp.min(jnp.where(codes > 0, codes, jnp.inf))
        kept_min = jnp.where(jnp.isfinite(kept_min), kept_min, threshold[...])
        thr = threshold[...]
        threshold[...] = jnp.where(step == 0, kept_min, thr + self.threshold_rate * (kept_min - thr))
        return stats

    def legacy_options(self) -> dict[str, Any]:
        return dict(super().legacy_options(), threshold_rate=self.threshold_rate)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReLUL1(MethodBase):
    """Untied ReLU SAE + l1 * mean_b sum_m |f_m| ||d_m||."""

    l1: float = 3e-2
    name: ClassVar[str] = "relu_l1"
    activation: ClassVar[str] = "relu"

    def __post_init__(self):
        super().__post_init__()
        check_number(self, "l1", sign="0+")

    def penalty(self, m: SAE, codes, z, resid, dead) -> jax.Array | None:
        norms = jnp.linalg.norm(m.decoder_weight(), axis=1)
        return self.l1 * jnp.mean(jnp.sum(codes * norms[None, :], axis=1))

    def legacy_options(self) -> dict[str, Any]:
        return dict(l1=self.l1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class JumpReLU(MethodBase):
    """Untied JumpReLU SAE + l0 * L0 through the rectangle-kernel straight-through estimator of
    width `bandwidth`; thresholds start at `jump_threshold` and are trained."""

    l0: float = 1e-2
    bandwidth: float = 0.05
    jump_threshold: float = 0.05
    name: ClassVar[str] = "jumprelu"
    activation: ClassVar[str] = "jumprelu"

    def __post_init__(self):
        super().__post_init__()
        check_number(self, "l0", sign="0+")
        check_number(self, "bandwidth", sign="+")
        check_number(self, "jump_threshold", sign="+")

    def model_options(self) -> dict[str, Any]:
        return dict(super().model_options(), bandwidth=self.bandwidth, jump_threshold=self.jump_threshold)

    def penalty(self, m: SAE, codes, z, resid, dead) -> jax.Array | None:
        log_threshold = m.log_threshold
        assert log_threshold is not None, "a JumpReLU SAE has thresholds"
        theta = jnp.exp(log_threshold[...])[None, :]
        return self.l0 * jnp.mean(jnp.sum(step_fn(z, theta, m.bandwidth), axis=1))

    def legacy_options(self) -> dict[str, Any]:
        return dict(l0=self.l0)
