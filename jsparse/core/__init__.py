"""Shared runtime used by every jsparse family (imports no family).

Modules:
  runner      — the solver loop (while / unrolled scan / implicit custom_root).
  montecarlo  — vmapped, chunked, resumable parameter sweeps over PRNG keys.
  kron        — Kronecker-structured products via mode products.
  metrics     — NMSE, support recovery, SAD, RMSE, Hungarian matching.
  validation  — eager argument checks that raise ValueError naming the argument.
  records     — environment facts, atomic JSON and pytree checkpoints with checksums.
  errors      — CorruptFileError, the one error for a file that cannot be used.
  progress    — progress bars between dispatches.
"""
from jsparse.core import errors, kron, metrics, progress, records, runner, validation
from jsparse.core.errors import CorruptFileError
from jsparse.core.runner import ADJOINTS, RunInfo, run

__all__ = [
    "CorruptFileError",
    "errors",
    "kron",
    "metrics",
    "progress",
    "records",
    "runner",
    "validation",
    "ADJOINTS",
    "RunInfo",
    "run",
]
