"""The paper's statistical model X = H V, streamed in batches from a key.

* `V` (n, d): n feature directions in d dimensions (rows unit-norm; Gaussian by default),
  superposition when n > d. Heavy superposition: d < sqrt(n); light: d > sqrt(n).
* `H` (N, n): non-negative and row-wise s-sparse. Each row activates exactly `s` features,
  drawn without replacement with weights `w` (Gumbel top-s), so feature i fires in about
  s * w_i of the rows: uniform weights give the paper's f = s / n; `power_law` weights give
  heterogeneous frequencies with a chosen max/min ratio.
* Active magnitudes are Uniform[low, high] (default [0.5, 1.5]).
* `cooccurrence` rho: features are paired (0,1), (2,3), ...; each drawn feature also switches
  on its partner with probability rho, so rows hold between s and 2s features [derived: the
  paper's H3 condition asks for low pairwise co-occurrence; rho = 0 is the default].
* Optional additive Gaussian noise with standard deviation `noise` per coordinate.

A `SyntheticStream` produces batch i from `fold_in(key, i)`, so any number of samples can be
drawn without holding them, and batch i is the same whatever was drawn before (which makes
checkpoint/resume exact). A `MixtureStream` concatenates the rows of several streams over the
same V, e.g. the paper's imbalanced-sparsity toy (`make_mixture_stream`: half of every batch
s = 3, half s = 20).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jsparse.core import validation as val

__all__ = [
    "make_features",
    "feature_weights",
    "sample_batch",
    "SyntheticStream",
    "MixtureStream",
    "make_stream",
    "make_mixture_stream",
]


def make_features(key: jax.Array, n: int, d: int, *, kind: str = "gaussian", dtype=jnp.float32) -> jax.Array:
    """Feature matrix V (n, d) with unit-norm rows.

    kind: "gaussian" (i.i.d. N(0, 1) entries, the theorem's assumption), "rademacher"
    (+-1 entries) or "sparse" (Gaussian entries kept with probability 1/4, a non-Gaussian case).
    """
    val.check_int(n, "n", minimum=1)
    val.check_int(d, "d", minimum=1)
    val.check_choice(kind, "kind", ("gaussian", "rademacher", "sparse"))
    k1, k2 = jax.random.split(key)
    if kind == "gaussian":
        v = jax.random.normal(k1, (n, d), dtype)
    elif kind == "rademacher":
        v = jax.random.rademacher(k1, (n, d), dtype)
    else:
        v = jax.random.normal(k1, (n, d), dtype) * jax.random.bernoulli(k2, 0.25, (n, d)).astype(dtype)
        v = v.at[:, 0].add(jnp.where(jnp.all(v == 0, axis=1), 1.0, 0.0).astype(dtype))  # no zero row
    return v / jnp.linalg.norm(v, axis=1, keepdims=True)


def feature_weights(n: int, *, kind: str = "uniform", ratio: float = 100.0) -> np.ndarray:
    """Sampling weights w (n,), summing to 1.

    "uniform": w_i = 1/n. "power_law": w_i proportional to (i + 1)^(-alpha) with alpha chosen
    so that w_0 / w_{n-1} = ratio (feature 0 the most frequent).
    """
    val.check_int(n, "n", minimum=1)
    val.check_choice(kind, "kind", ("uniform", "power_law"))
    if kind == "uniform" or n == 1:
        w = np.ones(n)
    else:
        val.check_positive(ratio, "ratio")
        alpha = np.log(ratio) / np.log(n)
        w = (np.arange(n) + 1.0) ** (-alpha)
    return w / w.sum()


def sample_batch(
    key: jax.Array,
    features: jax.Array,
    log_weights: jax.Array,
    batch_size: int,
    s: int,
    *,
    low: float = 0.5,
    high: float = 1.5,
    cooccurrence: float = 0.0,
    noise: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """One batch (x (B, d), h (B, n)) of X = H V (+ noise). Pure and jit-able.

    `batch_size` and `s` are static; `log_weights` (n,) are log sampling weights.
    """
    n = features.shape[0]
    dtype = features.dtype
    kg, km, kc, kn = jax.random.split(key, 4)
    # Gumbel top-s: s distinct features per row, drawn with probabilities proportional to w.
    scores = log_weights[None, :] + jax.random.gumbel(kg, (batch_size, n), dtype)
    _, idx = jax.lax.top_k(scores, s)
    active = jnp.zeros((batch_size, n), bool).at[jnp.arange(batch_size)[:, None], idx].set(True)
    if n >= 2:  # partner of feature i is i ^ 1 (the last one pairs with itself when n is odd)
        partner = jnp.minimum(jnp.arange(n) ^ 1, n - 1)
        extra = active[:, partner] & jax.random.bernoulli(kc, cooccurrence, (batch_size, n))
        active = active | extra
    mags = jax.random.uniform(km, (batch_size, n), dtype, low, high)
    h = jnp.where(active, mags, jnp.zeros((), dtype))
    x = jnp.matmul(h, features, precision=jax.lax.Precision.HIGHEST)
    x = x + noise * jax.random.normal(kn, x.shape, dtype)
    return x, h


class _Batches:
    """Iteration and frequency estimates shared by the streams (which define `batch`,
    `batch_with_codes` and `batch_size`)."""

    batch_size: int

    def batch(self, i: int) -> jax.Array:
        raise NotImplementedError

    def batch_with_codes(self, i: int) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    def __iter__(self):
        i = 0
        while True:
            yield self.batch(i)
            i += 1

    def frequencies(self, num_batches: int = 20, offset: int = 10**9) -> np.ndarray:
        """Empirical activation frequency of each feature (n,), from batches far from training's."""
        counts = sum(np.asarray((self.batch_with_codes(offset + j)[1] > 0).sum(0)) for j in range(num_batches))
        return np.asarray(counts / (num_batches * self.batch_size))


class SyntheticStream(_Batches):
    """Batches of the statistical model; batch i comes from `fold_in(key, i)`.

    Attributes: features (n, d), weights (n,), s, batch_size. `batch(i)` -> x (B, d);
    `batch_with_codes(i)` -> (x, h); iterating yields batch 0, 1, 2, ... forever.
    `frequencies()` estimates each feature's activation frequency by Monte Carlo.
    """

    def __init__(self, features, weights, *, s, batch_size, key, low=0.5, high=1.5, cooccurrence=0.0, noise=0.0):
        self.features = val.check_array(features, "features", ndim=2, dtype="float")
        n, self.d = self.features.shape
        self.weights = np.asarray(weights, dtype=np.float64)
        if self.weights.shape != (n,) or np.any(self.weights <= 0):
            raise ValueError(f"weights: expected {n} positive weights, got shape {self.weights.shape}")
        self.s = val.check_int(s, "s", minimum=1, maximum=n)
        self.batch_size = val.check_int(batch_size, "batch_size", minimum=1)
        val.check_in_range(cooccurrence, "cooccurrence", 0.0, 1.0)
        val.check_positive(noise, "noise", allow_zero=True)
        val.check_positive(high - low, "high - low")
        self.key = key
        log_w = jnp.asarray(np.log(self.weights), self.features.dtype)
        kw = dict(low=low, high=high, cooccurrence=cooccurrence, noise=noise)
        self._fn = jax.jit(
            lambda k, v, lw: sample_batch(k, v, lw, self.batch_size, self.s, **kw)
        )
        self._log_w = log_w

    def batch_with_codes(self, i: int) -> tuple[jax.Array, jax.Array]:
        return self._fn(jax.random.fold_in(self.key, i), self.features, self._log_w)

    def batch(self, i: int) -> jax.Array:
        return self.batch_with_codes(i)[0]



def make_stream(
    key: jax.Array,
    *,
    n: int,
    d: int,
    s: int,
    batch_size: int = 512,
    frequencies: str = "uniform",
    ratio: float = 100.0,
    feature_kind: str = "gaussian",
    dtype=jnp.float32,
    **kwargs,
) -> SyntheticStream:
    """Draw V from `key` and return the stream of its batches (see module docstring)."""
    kv, kd = jax.random.split(key)
    v = make_features(kv, n, d, kind=feature_kind, dtype=dtype)
    w = feature_weights(n, kind=frequencies, ratio=ratio)
    return SyntheticStream(v, w, s=s, batch_size=batch_size, key=kd, **kwargs)


class MixtureStream(_Batches):
    """Batch i = the rows of batch i of every stream, concatenated in order (streams over one V).

    Attributes: features (n, d), streams, batch_size (total rows). Same methods as
    `SyntheticStream`: `batch(i)` -> x (B, d), `batch_with_codes(i)` -> (x, h (B, n)),
    iteration, `frequencies()`.
    """

    def __init__(self, streams):
        self.streams = tuple(streams)
        if not self.streams or not all(isinstance(s, SyntheticStream) for s in self.streams):
            raise ValueError("streams: expected one or more SyntheticStream objects")
        self.features = self.streams[0].features
        for j, s in enumerate(self.streams[1:], 1):
            if s.features.shape != self.features.shape or not bool(jnp.array_equal(s.features, self.features)):
                raise ValueError(f"streams: stream {j} has other features than stream 0 (one V for all)")
        self.d = self.streams[0].d
        self.batch_size = sum(s.batch_size for s in self.streams)

    def batch_with_codes(self, i: int) -> tuple[jax.Array, jax.Array]:
        parts = [s.batch_with_codes(i) for s in self.streams]
        return jnp.concatenate([p[0] for p in parts], axis=0), jnp.concatenate([p[1] for p in parts], axis=0)

    def batch(self, i: int) -> jax.Array:
        return jnp.concatenate([s.batch(i) for s in self.streams], axis=0)



def make_mixture_stream(
    key: jax.Array,
    *,
    n: int,
    d: int,
    s=(3, 20),
    batch_size: int = 512,
    feature_kind: str = "gaussian",
    dtype=jnp.float32,
    **kwargs,
) -> MixtureStream:
    """One V (n, d) and, per entry of `s`, a stream of batch_size / len(s) rows with that many
    active features; batch i stacks them in order. The default s = (3, 20) is the paper's
    imbalanced toy (every feature has f = mean(s) / n). Keys: V from split(key, 1 + len(s))[0],
    stream j from entry j + 1. `kwargs` as `SyntheticStream` (low, high, cooccurrence, noise)."""
    s = tuple(s) if isinstance(s, (list, tuple)) else (s,)
    if not s:
        raise ValueError("s: expected one or more sparsity levels")
    val.check_int(batch_size, "batch_size", minimum=len(s))
    if batch_size % len(s):
        raise ValueError(f"batch_size: {batch_size} is not divisible by the {len(s)} sparsity levels of s")
    keys = jax.random.split(val.as_key(key, "key"), 1 + len(s))
    v = make_features(keys[0], n, d, kind=feature_kind, dtype=dtype)
    w = feature_weights(n)
    rows = batch_size // len(s)
    return MixtureStream([SyntheticStream(v, w, s=sj, batch_size=rows, key=keys[j + 1], **kwargs)
                          for j, sj in enumerate(s)])
