"""jsparse: sparsity algorithms in pure, jit-able JAX.

Families (each a subpackage): `jsparse.sbl`, `jsparse.unmixing`, `jsparse.pruning`, `jsparse.sae`.
Shared runtime: `jsparse.core`. A first algorithm through the runner: `jsparse.lasso`.
"""
from jsparse import core
from jsparse.core import kron, metrics

__version__ = "0.1.0"

__all__ = ["core", "kron", "metrics", "__version__"]
