"""The protocol every SAE training method implements and the base its values share.

See `methods` for the protocol's pieces; here: `Method`, `MethodBase` (the model settings every
method has, validation helpers) and `check_names` (a keyword that is not one of a method's fields).
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol, runtime_checkable

import jax
import numpy as np

from jsparse.core import validation as val

from . import gba
from .model import SAE

__all__ = ["Method", "MethodBase", "check_names", "set_field", "check_flag", "check_number"]


@runtime_checkable
class Method(Protocol):
    """What `train` needs from a method value (see the module docstring)."""

    name: ClassVar[str]

    def resolve(self, d: int, width: int) -> Method: ...

    def model_options(self) -> dict[str, Any]: ...

    def target_vector(self, width: int, dtype) -> jax.Array | None: ...

    def start(self, model: SAE, x0: jax.Array, targets: jax.Array) -> None: ...

    def step_part(self) -> Any: ...

    def legacy_options(self) -> dict[str, Any]: ...


def set_field(obj, name: str, value) -> None:
    """Set a field of a frozen value (in __post_init__: normalised settings)."""
    object.__setattr__(obj, name, value)


def check_flag(obj, name: str) -> None:
    """Field `name` must be a bool; stored as a Python bool."""
    v = getattr(obj, name)
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{name}: expected True or False, got {v!r}")
    set_field(obj, name, bool(v))


def check_number(obj, name: str, *, sign: str = "") -> None:
    """Field `name` must be a real number (sign "+": > 0, "0+": >= 0); stored as a Python float."""
    v = getattr(obj, name)
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {v!r}")
    if sign:
        val.check_positive(v, name, allow_zero=sign == "0+")
    set_field(obj, name, float(v))


@dataclasses.dataclass(frozen=True, kw_only=True)
class MethodBase:
    """Model settings every method has: tied decoder, learned output scale a and its start value."""

    name: ClassVar[str]
    activation: ClassVar[str]
    tied: bool = False
    output_scale: bool = False
    scale_init: float = 1.0

    def __post_init__(self):
        check_flag(self, "tied")
        check_flag(self, "output_scale")
        check_number(self, "scale_init")

    @classmethod
    def from_options(cls, **options) -> MethodBase:
        """The method from `train`'s keyword shorthand (only this method's fields)."""
        check_names(cls, options)
        return cls(**options)

    def resolve(self, d: int, width: int) -> MethodBase:
        return self

    def model_options(self) -> dict[str, Any]:
        return dict(activation=self.activation, tied=self.tied, output_scale=self.output_scale,
                    scale_init=self.scale_init)

    def target_vector(self, width: int, dtype) -> jax.Array | None:
        return None

    def start(self, model: SAE, x0: jax.Array, targets: jax.Array) -> None:
        return None

    def step_part(self) -> Any:
        return self

    def penalty(self, m: SAE, codes, z, resid, dead) -> jax.Array | None:
        """Loss term added to the reconstruction loss (None: reconstruction only). On the step's fast
        formulation (`losses.py`) the TopK family's penalty also gets `pick` (idx -> z at idx)."""
        return None

    def post_step(self, m: SAE, stats: gba.WindowStats, targets, step, codes, z) -> gba.WindowStats:
        """Updates after the optimiser step (may set m's non-trained variables); returns the stats."""
        return stats

    def legacy_options(self) -> dict[str, Any]:
        return {}


def check_names(cls, options: dict) -> None:
    """ValueError naming the first key of `options` that is not a field of method class `cls`."""
    names = {f.name for f in dataclasses.fields(cls)}
    for key in options:
        if key not in names:
            raise ValueError(f"{key}: does not apply to method {cls.name!r} (its settings: {', '.join(sorted(names))})")
