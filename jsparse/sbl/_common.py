"""Shared pieces of the SBL family: result type, validation, guarded arithmetic, a safe `eigh`.

Conventions (see docs/sbl.md):
  * x has length N = prod(N_i) with the *last* factor fastest: y ~ kron(H_1, ..., H_I) @ x.
  * Hyperparameters gamma (prior variances) are real and non-negative; pruning sets entries to 0
    (fixed shapes), which is exactly equivalent to deleting the matching dictionary columns.
  * Noise variance sigma^2 is real and positive; it is learned by EM when `noise_var=None`.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jsparse.core import linalg as core_linalg
from jsparse.core import runner
from jsparse.core import validation as V
from jsparse.core.linalg import HIGHEST
from jsparse.core.metrics import nmse

__all__ = ["HIGHEST", "SBLResult", "nmse_trace", "run_solver", "em_noise_update"]


class SBLResult(NamedTuple):
    """Output of the SBL solvers (batched along a leading axis under vmap).

    Attributes:
      x: (N,) posterior mean under the learned prior, zero at pruned positions (dtype of y).
      gammas: tuple of (N_i,) prior variances per factor (Kronecker methods; their Kronecker
        product is the full prior), or a 1-tuple with the (N,) vector for classic SBL. Real.
      noise_var: () noise variance used by the final estimate (learned or given). Real.
      iterations: () int32 EM iterations run.
      converged: () bool, the relative change of the full gamma fell below `tol` with all
        quantities finite.
      trace: (max_iters,) real, the `trace_fn` value after each iteration (NaN after the stop),
        or None when no trace was asked for.
    """

    x: jax.Array
    gammas: tuple
    noise_var: jax.Array
    iterations: jax.Array
    converged: jax.Array
    trace: jax.Array | None = None


def nmse_trace(solver: Any, x_true: jax.Array) -> Callable[..., jax.Array]:
    """A `trace_fn` recording NMSE(solver.estimate(state, *data), x_true) after every iteration.

    `solver.estimate` is the solver's current estimate of x (for the Kronecker methods the
    posterior mean under the pruned prior of the state, which costs one more E-step per
    iteration; for classic SBL and PC-SBL the E-step mean kept in the state).
    """
    return lambda state, *data: nmse(solver.estimate(state, *data), x_true)


@partial(jax.jit, static_argnames=("trace_fn",))
def run_solver(solver: Any, data: tuple, x_true: jax.Array | None = None, trace_fn: Callable | None = None):
    """`runner.solve(solver, *data)` compiled once per shapes and settings; x_true gives the NMSE trace."""
    if x_true is not None:
        trace_fn = nmse_trace(solver, x_true)
    return runner.solve(solver, *data, trace_fn=trace_fn)


def em_noise_update(resid_sq: jax.Array, dof: jax.Array, sigma2: jax.Array, y: jax.Array) -> jax.Array:
    """Wipf–Rao EM update of σ²: (||y − Hμ||² + σ² Σ_n (1 − Σ_nn/γ_n)) / M, floored (`noise_floor`)."""
    return jnp.maximum((resid_sq + sigma2 * dof) / y.shape[0], noise_floor(y))


def real_dtype(dtype) -> jnp.dtype:
    return jnp.finfo(jnp.dtype(dtype)).dtype


def tiny(dtype) -> float:
    """A positive floor far above underflow: sqrt of the smallest normal number."""
    return float(np.sqrt(jnp.finfo(real_dtype(dtype)).tiny))


def safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """num / den where den > 0, else 0 (no NaN in values or gradients)."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def safe_sqrt(v: jax.Array) -> jax.Array:
    """sqrt(v) for v >= 0 with a zero (not infinite) derivative at v = 0."""
    ok = v > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, v, 1)), 0)


def safe_norm(v: jax.Array) -> jax.Array:
    """Euclidean norm with a finite derivative at 0."""
    return safe_sqrt(jnp.sum(jnp.abs(v) ** 2))


def full_gamma(gammas: Sequence[jax.Array]) -> jax.Array:
    """Kronecker product of the per-factor vectors, flattened (last factor fastest)."""
    out = gammas[0]
    for g in gammas[1:]:
        out = jnp.outer(out, g).reshape(-1)
    return out


def prune(gammas: Sequence[jax.Array], rel: Sequence[float], abs_: float) -> tuple:
    """Zero entries with gamma_i[j] < rel_i * max(gamma_i) or gamma_i[j] < abs_ (strict <)."""
    out = []
    for g, r in zip(gammas, rel):
        cut = jnp.maximum(r * jnp.max(g), abs_)
        out.append(jnp.where(g < cut, jnp.zeros_like(g), g))
    return tuple(out)


def initial_noise_var(y: jax.Array) -> jax.Array:
    """0.1 * var(y), floored so that y = 0 (or a constant y) gives a positive value."""
    rdt = real_dtype(y.dtype)
    v = jnp.mean(jnp.abs(y - jnp.mean(y)) ** 2).astype(rdt)
    return jnp.maximum(0.1 * v, tiny(rdt))


def noise_floor(y: jax.Array) -> jax.Array:
    """Lower bound for the learned noise variance: relative to the data power, never 0."""
    rdt = real_dtype(y.dtype)
    power = jnp.mean(jnp.abs(y) ** 2).astype(rdt)
    return jnp.maximum(jnp.finfo(rdt).eps * power, tiny(rdt))


# --------------------------------------------------------------------------------------------
# eigh with a derivative that ignores rotations inside (near-)degenerate eigenspaces.
# The SBL quantities are spectral functions, invariant to such rotations, but jnp.linalg.eigh's
# derivative divides by eigenvalue gaps: pruned (rank-deficient) factors have clusters of
# zero eigenvalues, which would produce inf/NaN gradients.
# --------------------------------------------------------------------------------------------
# The implementation lives in core (shared with other families): it also maps vmapped batches one
# matrix at a time on CPU, avoiding the jaxlib batched-syevd deadlock (docs/troubleshooting.md).
safe_eigh = core_linalg.eigh


# --------------------------------------------------------------------------------------------
# Validation at the API boundary (before tracing).
# --------------------------------------------------------------------------------------------
def check_per_factor_prune(prune: Any, n_factors: int) -> tuple:
    """Relative pruning thresholds: a float or one float per factor, each in [0, 1)."""
    values = list(prune) if isinstance(prune, (list, tuple)) else [prune] * n_factors
    check_scalars(**{f"prune[{i}]" if isinstance(prune, (list, tuple)) else "prune": v for i, v in enumerate(values)})
    if len(values) != n_factors:
        raise ValueError(f"prune: expected a float or {n_factors} floats (one per factor), got {prune!r}")
    for v in values:
        V.check_in_range(v, "prune", 0.0, 1.0, high_inclusive=False)
    return tuple(float(v) for v in values)


def check_scalars(**named: Any) -> None:
    """ValueError naming the argument for a value that is not a real number (`validation.check_real`)."""
    V.check_real(**named)


def check_snr(snr_db: Any) -> None:
    """A finite real SNR in dB (traced values pass)."""
    check_scalars(snr_db=snr_db)
    if V.is_concrete(snr_db) and not np.isfinite(np.asarray(snr_db)):
        raise ValueError(f"snr_db: expected a finite number, got {snr_db!r}")


def check_noise_var(noise_var: Any) -> None:
    if noise_var is None:
        return
    if not V.is_concrete(noise_var):
        return
    check_scalars(noise_var=noise_var)
    V.check_positive(noise_var, "noise_var")


def check_flag(value: Any, name: str) -> bool:
    """A Python bool (static setting)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_nonempty(arr: jax.Array, name: str) -> None:
    """ValueError naming `name` when an array has a zero-length dimension (nothing to solve for)."""
    if 0 in arr.shape:
        raise ValueError(f"{name}: expected no zero-length dimension, got shape {arr.shape}")


def check_y_factors(y: Any, factors: Any) -> tuple[jax.Array, tuple]:
    """y: (prod M_i,) inexact; factors: >= 2 two-dimensional arrays of y's dtype."""
    facs = V.check_factors(factors, "factors", min_factors=2)
    for i, f in enumerate(facs):
        check_nonempty(f, f"factors[{i}]")
    y = V.check_array(y, "y", ndim=1, dtype="inexact")
    m = int(np.prod([f.shape[0] for f in facs]))
    if y.shape[0] != m:
        raise ValueError(
            f"y: expected length prod(M_i) = {m} for factors with rows {[f.shape[0] for f in facs]}, "
            f"got shape {y.shape}"
        )
    if facs[0].dtype != y.dtype:
        raise ValueError(f"factors: dtype {facs[0].dtype} differs from y's dtype {y.dtype}")
    return y, facs


def check_y_dict(y: Any, H: Any) -> tuple[jax.Array, jax.Array]:
    """y: (M,) inexact; H: (M, N) of y's dtype."""
    y = V.check_array(y, "y", ndim=1, dtype="inexact")
    H = V.check_array(H, "H", ndim=2, dtype="inexact")
    check_nonempty(y, "y")
    check_matches(H, "H", y, "y")
    check_nonempty(H, "H")
    return y, H


def check_matches(arr: jax.Array, name: str, other: jax.Array, other_name: str) -> None:
    """ValueError naming `name` unless arr has other's leading length and other's dtype."""
    if arr.shape[0] != other.shape[0]:
        raise ValueError(f"{name}: expected leading length {other.shape[0]} to match {other_name}, "
                         f"got shape {arr.shape}")
    if arr.dtype != other.dtype:
        raise ValueError(f"{name}: dtype {arr.dtype} differs from {other_name}'s dtype {other.dtype}")


def check_tol(tol: Any) -> float:
    check_scalars(tol=tol)
    V.check_positive(tol, "tol", allow_zero=True)
    return float(tol)
