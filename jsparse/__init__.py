"""jsparse: sparsity algorithms in pure, jit-able JAX.

Families (subpackages, imported on first use):
  jsparse.sbl       Kronecker-structured sparse Bayesian learning, greedy baselines, IRS-MIMO.
  jsparse.unmixing  robust hyperspectral unmixing (RRLbS) and baselines.
  jsparse.pruning   PQ Index, sparsity-informed adaptive pruning, masked optax, Flax NNX models.
  jsparse.sae       sparse autoencoders with group bias adaptation and the usual baselines.
Shared runtime: jsparse.core. A first algorithm through the runner: jsparse.lasso.
"""
import importlib
from typing import TYPE_CHECKING

from jsparse import core
from jsparse.core import kron, metrics
from jsparse.core.errors import CorruptFileError

if TYPE_CHECKING:  # the families load lazily (see __getattr__); type checkers see them as imports
    from jsparse import lasso, pruning, sae, sbl, unmixing

__version__ = "0.1.0"

_LAZY = ("sbl", "unmixing", "pruning", "sae", "lasso")

__all__ = ["CorruptFileError", "core", "kron", "metrics", "__version__", "sbl", "unmixing", "pruning", "sae", "lasso"]


def __getattr__(name):
    # Families import Flax/optax and more; load them only when asked for.
    if name in _LAZY:
        return importlib.import_module(f"jsparse.{name}")
    raise AttributeError(f"module 'jsparse' has no attribute {name!r}")
