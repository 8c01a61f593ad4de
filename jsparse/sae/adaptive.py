"""GBA and BA as method values: bias adaptation (`gba.py`) instead of a sparsity penalty.

The jitted step's part (`BiasRuleStep`) holds only the rule's static settings; the per-latent
targets live in the train state, so a sweep over targets compiles the step once.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jsparse.core import validation as val

from . import gba
from .method_base import MethodBase, check_flag, check_number, set_field
from .model import SAE

__all__ = ["GBA", "BA", "AdaptiveMethod", "BiasRuleStep"]


@dataclasses.dataclass(frozen=True)
class BiasRuleStep:
    """GBA/BA's part of the jitted step: no loss term; after the optimiser step the batch's
    pre-activations z (B, M) enter the window statistics and, when a window closes, the bias rule
    moves m.bias with the state's targets (M,). adapt=False: neither (benchmarks)."""

    num_groups: int
    gamma_minus: float
    gamma_plus: float
    eps: float
    update_every: int
    adapt: bool = True

    def penalty(self, m: SAE, codes, z, resid, dead) -> jax.Array | None:
        return None

    def post_step(self, m: SAE, stats: gba.WindowStats, targets, step, codes, z) -> gba.WindowStats:
        if not self.adapt:
            return stats
        stats = gba.accumulate(stats, z)
        groups = jnp.asarray(gba.group_ids(targets.shape[0], self.num_groups))
        cfg = gba.GBAConfig(targets, groups, self.num_groups, self.gamma_minus, self.gamma_plus, self.eps,
                            self.update_every)
        bias = m.bias
        assert bias is not None, "an adaptive-gate SAE has a bias"
        new_bias, stats, _ = gba.maybe_update(bias[...], stats, step, cfg)
        bias[...] = new_bias
        return stats


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdaptiveMethod(MethodBase):
    """Bias adaptation (gba.py): tied SAE, output scale a (start 0.01), adaptive gate, loss =
    reconstruction only. gate: "jump" (u 1[u + b > 0]) or "relu". bias_init: "zero" (the paper)
    or "quantile" (each bias where its latent fires at its target on the first batch)."""

    tied: bool = True
    output_scale: bool = True
    scale_init: float = 0.01  # small a: the theory's a -> 0 decoupling (docs/sae.md)
    gamma_minus: float = 0.01
    gamma_plus: float = 0.01
    eps: float = 1e-6
    update_every: int = 10
    bias_init: str = "zero"
    gate: str = "jump"
    adapt: bool = True
    activation: ClassVar[str] = "adaptive"

    def __post_init__(self):
        super().__post_init__()
        check_number(self, "gamma_minus", sign="0+")
        check_number(self, "gamma_plus", sign="0+")
        check_number(self, "eps")
        val.check_in_range(self.eps, "eps", 0.0, 1.0)
        set_field(self, "update_every", val.check_int(self.update_every, "update_every", minimum=1))
        val.check_choice(self.bias_init, "bias_init", ("zero", "quantile"))
        val.check_choice(self.gate, "gate", ("jump", "relu"))
        check_flag(self, "adapt")

    @property
    def num_groups(self) -> int:
        raise NotImplementedError

    def config(self, width: int, dtype=jnp.float32) -> gba.GBAConfig:
        """The validated `gba.GBAConfig` of this method at `width` latents."""
        raise NotImplementedError

    def resolve(self, d: int, width: int) -> AdaptiveMethod:
        gba.group_ids(width, self.num_groups)  # groups <= width
        return self

    def model_options(self) -> dict[str, Any]:
        return dict(super().model_options(), gate=self.gate)

    def target_vector(self, width: int, dtype) -> jax.Array:
        return self.config(width, dtype).targets

    def start(self, model: SAE, x0: jax.Array, targets: jax.Array) -> None:
        if self.bias_init == "quantile" and model.bias is not None:
            model.bias[...] = gba.quantile_bias(model.projections(x0), targets.astype(x0.dtype), -1.0, 0.0)

    def step_part(self) -> BiasRuleStep:
        return BiasRuleStep(self.num_groups, self.gamma_minus, self.gamma_plus, self.eps, self.update_every,
                            self.adapt)

    def legacy_options(self) -> dict[str, Any]:
        return dict(adapt=self.adapt)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GBA(AdaptiveMethod):
    """Group bias adaptation: `groups` contiguous groups with geometric targets from `htf` down to
    `ltf`, or explicit strictly decreasing `targets` (one per group, in (0, 1))."""

    groups: int = 10
    htf: float = 0.5
    ltf: float = 1e-3
    targets: Sequence[float] | None = None  # stored as a tuple (hashable)
    name: ClassVar[str] = "gba"

    def __post_init__(self):
        super().__post_init__()
        check_number(self, "htf")
        check_number(self, "ltf")
        if self.targets is not None:
            freqs = np.asarray(self.targets, dtype=np.float64).reshape(-1)
            gba.check_frequencies(freqs, "targets")
            set_field(self, "targets", tuple(float(t) for t in freqs))
        else:
            gba.target_frequencies(self.groups, self.htf, self.ltf)

    @property
    def num_groups(self) -> int:
        return len(self.targets) if self.targets is not None else int(self.groups)

    def config(self, width: int, dtype=jnp.float32) -> gba.GBAConfig:
        return gba.make_config(width, groups=self.groups, htf=self.htf, ltf=self.ltf, targets=self.targets,
                               gamma_minus=self.gamma_minus, gamma_plus=self.gamma_plus, eps=self.eps,
                               update_every=self.update_every, dtype=dtype)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BA(AdaptiveMethod):
    """Bias adaptation with one target frequency `target` in (0, 1) for every latent (default
    sqrt(0.5 * 1e-3), the geometric middle of GBA's default range)."""

    target: float = float(np.sqrt(0.5 * 1e-3))
    name: ClassVar[str] = "ba"

    def __post_init__(self):
        super().__post_init__()
        check_number(self, "target")
        val.check_in_range(self.target, "target", 0.0, 1.0, low_inclusive=False, high_inclusive=False)

    @classmethod
    def from_options(cls, *, htf: float | None = None, ltf: float | None = None, **options) -> BA:
        """As `MethodBase.from_options`; `htf` / `ltf` without `target` give target sqrt(htf * ltf)."""
        if "target" not in options and (htf is not None or ltf is not None):
            options["target"] = float(np.sqrt((0.5 if htf is None else htf) * (1e-3 if ltf is None else ltf)))
        return super().from_options(**options)  # type: ignore[return-value]

    @property
    def num_groups(self) -> int:
        return 1

    def config(self, width: int, dtype=jnp.float32) -> gba.GBAConfig:
        return gba.make_config(width, groups=1, htf=self.target, gamma_minus=self.gamma_minus,
                               gamma_plus=self.gamma_plus, eps=self.eps, update_every=self.update_every, dtype=dtype)
