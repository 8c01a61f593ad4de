"""Eager input validation for public entry points.

Every public function validates its inputs *before* tracing and raises a
`ValueError` that names the argument and states what was expected and what was
received. Value checks (NaN/Inf, sign) only run on concrete arrays: inside
`jit`/`vmap` the values are abstract, and nothing may raise there.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

__all__ = [
    "is_concrete",
    "check_array",
    "check_real",
    "check_positive",
    "check_in_range",
    "check_choice",
    "check_int",
    "check_same_tree",
    "check_factors",
    "as_key",
    "check_bool_mask",
    "check_tree",
]


def is_concrete(x: Any) -> bool:
    """True when `x` holds real values (not a tracer under jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def _shape_str(shape: Sequence[Any]) -> str:
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"


def check_array(
    x: Any,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    shape: Sequence[int | None] | None = None,
    dtype: str | None = None,
    finite: bool = True,
    nonnegative: bool = False,
    nonnegative_hint: str = "",
) -> jax.Array:
    """Validate an array argument and return it as a JAX array.

    Args:
      x: the value to check (array-like).
      name: argument name used in error messages.
      ndim: required number of dimensions (or a tuple of allowed values).
      shape: required shape; `None` entries are free.
      dtype: "float" (real floating), "inexact" (real or complex floating),
        "numeric" (any number) or None.
      finite: reject NaN/Inf (only checked on concrete values).
      nonnegative: reject negative entries (only checked on concrete values).
      nonnegative_hint: appended to the negativity error (e.g. the option that clips).
    """
    try:
        arr = jnp.asarray(x)
    except TypeError as err:
        raise ValueError(f"{name}: expected an array, got {type(x).__name__}") from err
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = allowed[0] if len(allowed) == 1 else f"one of {allowed}"
            raise ValueError(f"{name}: expected {want} dimensions, got shape {arr.shape}")
    if shape is not None:
        ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
        if not ok:
            raise ValueError(f"{name}: expected shape {_shape_str(shape)}, got {arr.shape}")
    if dtype is not None:
        kinds = {
            "float": jnp.floating,
            "inexact": jnp.inexact,
            "numeric": jnp.number,
        }
        if dtype not in kinds:
            raise ValueError(f"unknown dtype requirement {dtype!r}")
        if not jnp.issubdtype(arr.dtype, kinds[dtype]):
            raise ValueError(f"{name}: expected a {dtype} dtype, got {arr.dtype}")
    if is_concrete(arr) and arr.size:
        if finite and jnp.issubdtype(arr.dtype, jnp.inexact):
            if not bool(np.all(np.isfinite(np.asarray(arr)))):
                raise ValueError(f"{name}: contains NaN or Inf values")
        if nonnegative and jnp.issubdtype(arr.dtype, jnp.number):
            if bool(np.any(np.asarray(arr) < 0)):
                msg = f"{name}: contains negative values"
                raise ValueError(msg + (f"; {nonnegative_hint}" if nonnegative_hint else ""))
    return arr


def check_real(**named: Any) -> None:
    """ValueError naming the argument for a concrete value that is not a real number (a string, a
    list, a complex number, a bool). None and traced values pass (their checks belong to the
    caller or to the traced code)."""
    for name, value in named.items():
        if value is None or not is_concrete(value):
            continue
        ok = isinstance(value, (int, float, np.generic, np.ndarray, jax.Array)) and not isinstance(value, bool)
        arr = np.asarray(value) if ok else None
        if arr is None or arr.ndim != 0 or not np.issubdtype(arr.dtype, np.number) \
                or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"{name}: expected a real number, got {value!r}")


def check_positive(value: Any, name: str, *, allow_zero: bool = False, allow_none: bool = False) -> None:
    """Raise unless `value` is a positive (or non-negative) real scalar."""
    if value is None and allow_none:
        return
    if value is None:
        raise ValueError(f"{name}: expected a number, got None")
    if not is_concrete(value):
        return
    check_real(**{name: value})
    v = np.asarray(value)
    if v.ndim != 0 or not np.isfinite(v) or (v < 0 if allow_zero else v <= 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite scalar {bound}, got {value!r}")


def check_in_range(
    value: Any,
    name: str,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raise unless `low <= value <= high` (bounds inclusive or not)."""
    if value is None:
        raise ValueError(f"{name}: expected a number, got None")
    if not is_concrete(value):
        return
    check_real(**{name: value})
    v = np.asarray(value)
    ok = v.ndim == 0 and np.isfinite(v)
    ok = ok and (v >= low if low_inclusive else v > low) and (v <= high if high_inclusive else v < high)
    if not ok:
        lb = "[" if low_inclusive else "("
        hb = "]" if high_inclusive else ")"
        raise ValueError(f"{name}: expected a value in {lb}{low}, {high}{hb}, got {value!r}")


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> None:
    """Raise unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {tuple(choices)}, got {value!r}")


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Raise unless `value` is an integer within [minimum, maximum]; return it as int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected an integer <= {maximum}, got {value}")
    return int(value)


def check_same_tree(tree: Any, reference: Any, name: str, reference_name: str) -> None:
    """Raise unless `tree` has the same pytree structure and leaf shapes as `reference`."""
    t1 = jax.tree_util.tree_structure(tree)
    t2 = jax.tree_util.tree_structure(reference)
    if t1 != t2:
        raise ValueError(f"{name}: tree structure differs from {reference_name}: got {t1}, expected {t2}")
    for a, b in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(reference)):
        if np.shape(a) != np.shape(b):
            raise ValueError(
                f"{name}: leaf shape {np.shape(a)} differs from {reference_name} leaf shape {np.shape(b)}"
            )


def check_factors(
    factors: Any, name: str = "factors", *, min_factors: int = 2, rows: Sequence[int] | None = None
) -> tuple[jax.Array, ...]:
    """Validate a sequence of 2-D Kronecker factors (same inexact dtype, finite)."""
    if not isinstance(factors, (list, tuple)):
        raise ValueError(f"{name}: expected a list or tuple of 2-D arrays, got {type(factors).__name__}")
    if len(factors) < min_factors:
        raise ValueError(f"{name}: expected at least {min_factors} factors, got {len(factors)}")
    if rows is not None and len(rows) != len(factors):
        raise ValueError(f"{name}: expected {len(rows)} factors, got {len(factors)}")
    out = []
    for i, f in enumerate(factors):
        arr = check_array(f, f"{name}[{i}]", ndim=2, dtype="inexact")
        if rows is not None and arr.shape[0] != rows[i]:
            raise ValueError(f"{name}[{i}]: expected {rows[i]} rows, got shape {arr.shape}")
        out.append(arr)
    dtypes = {a.dtype for a in out}
    if len(dtypes) > 1:
        raise ValueError(f"{name}: all factors must share one dtype, got {sorted(map(str, dtypes))}")
    return tuple(out)


def as_key(seed_or_key: Any, name: str = "key") -> jax.Array:
    """Return a PRNG key from an int seed or an existing key; raise ValueError otherwise.

    Accepts a Python or NumPy integer seed in [0, 2**63) (turned into
    `jax.random.PRNGKey(seed)`, the same key in float32 and float64 mode), a raw
    `uint32` key of shape (2,) as made by `jax.random.PRNGKey`, or a typed scalar
    key from `jax.random.key`. Keys are returned unchanged (tracers included).
    """
    if isinstance(seed_or_key, (int, np.integer)) and not isinstance(seed_or_key, (bool, np.bool_)):
        seed = int(seed_or_key)
        if not 0 <= seed < 2**63:
            raise ValueError(f"{name}: expected an integer seed in [0, 2**63) or a PRNG key, got {seed}")
        if seed < 2**32:
            return jax.random.PRNGKey(seed)
        with jax.enable_x64(True):  # seeds past 32 bits need 64-bit integers to keep their high word
            return jax.random.PRNGKey(seed)
    dtype = getattr(seed_or_key, "dtype", None)
    shape = tuple(getattr(seed_or_key, "shape", ()))
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise ValueError(f"{name}: expected a single PRNG key, got a batch of shape {shape}")
        return jnp.asarray(seed_or_key)
    if dtype is not None and np.dtype(dtype) == np.uint32 and shape in ((2,), (4,)):  # threefry / rbg raw keys
        return jnp.asarray(seed_or_key)
    got = f"an array of dtype {dtype} and shape {shape}" if dtype is not None else repr(seed_or_key)
    raise ValueError(f"{name}: expected an integer seed or a PRNG key (jax.random.PRNGKey / jax.random.key), got {got}")


def check_bool_mask(mask: Any, name: str, *, shape: Sequence[int] | None = None) -> jax.Array:
    """Raise unless `mask` is a boolean array (of `shape` when given); return it as a JAX array.

    Float or integer masks are refused rather than cast: a value such as 0.5 has no
    keep/prune meaning.
    """
    dtype = getattr(mask, "dtype", None)
    if dtype is None and not isinstance(mask, (bool, np.bool_, list, tuple)):
        raise ValueError(f"{name}: expected a boolean array, got {type(mask).__name__}")
    arr: Any = np.asarray(mask) if dtype is None else mask
    if np.dtype(arr.dtype) != np.bool_:
        raise ValueError(f"{name}: expected a boolean mask (dtype bool), got dtype {arr.dtype}")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(arr.shape)}")
    return jnp.asarray(arr)


def check_tree(tree: Any, name: str, *, finite: bool = True, boolean: bool = False) -> None:
    """Raise unless every leaf of `tree` is a numeric (or, with `boolean`, a bool) array; with
    `finite`, concrete float leaves must hold no NaN/Inf. Errors name the leaf's path."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        where = f"{name}{jax.tree_util.keystr(path)}"
        if boolean:
            check_bool_mask(leaf, where)
            continue
        dtype = getattr(leaf, "dtype", None)
        if dtype is None and not isinstance(leaf, (int, float, np.generic)) or isinstance(leaf, bool):
            raise ValueError(f"{where}: expected a numeric array, got {type(leaf).__name__}")
        check_array(leaf, where, dtype="numeric", finite=finite)
