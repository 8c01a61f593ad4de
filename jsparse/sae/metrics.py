"""SAE metrics, defined as the paper and the SAE libraries define them.

* `cosine_matrix(a, b)`: (Ra, d), (Rb, d) -> (Ra, Rb) cosine similarities of rows.
* `recovery_rate(decoder, features, thresholds, matching)`: fraction of true features matched
  by a latent with cosine >= tau. "max" (the paper's FRR): feature i counts if some latent has
  cosine >= tau with it (one latent may serve several features). "hungarian": one-to-one
  matching maximising the total cosine (scipy), then the fraction of matched pairs >= tau.
* `per_feature_max_cosine`: (n,) best cosine of each true feature (for rare-feature tables).
* `fvu(x, x_hat)` = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2; `explained_variance` = 1 - fvu
  (SAELens' definition, over the whole set).
* `mean_l0(codes)`: mean number of non-zero latents per sample.
* `dead_fraction(fire_counts)`: fraction of latents that never fired over the window the
  counts were taken on (e.g. an evaluation set: 1 - SAEBench's alive fraction).
* `max_cosine_consistency(dec_a, dec_b, threshold)`: for each latent of seed a, its maximum
  cosine to all latents of seed b (the paper's MCS), and the fraction above `threshold`.
* `frequency_histogram(freqs, bins)`: histogram of log10 activation frequencies.
* `evaluate(model, batches)`: FVU, explained variance, L0, dead fraction, per-latent frequencies.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jsparse.core import metrics as core_metrics
from jsparse.core import validation as val

__all__ = [
    "cosine_matrix",
    "recovery_rate",
    "per_feature_max_cosine",
    "fvu",
    "explained_variance",
    "mean_l0",
    "dead_fraction",
    "max_cosine_consistency",
    "frequency_histogram",
    "evaluate",
]


def _unit_rows(a: jax.Array) -> jax.Array:
    return a / jnp.maximum(jnp.linalg.norm(a, axis=1, keepdims=True), jnp.finfo(a.dtype).tiny)


def cosine_matrix(a: jax.Array, b: jax.Array) -> jax.Array:
    """Cosine similarity of every row of a (Ra, d) with every row of b (Rb, d): (Ra, Rb)."""
    a = val.check_array(a, "a", ndim=2, dtype="float")
    b = val.check_array(b, "b", ndim=2, dtype="float")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"b: expected {a.shape[1]} columns like a, got {b.shape[1]}")
    return jnp.matmul(_unit_rows(a), _unit_rows(b).T, precision=jax.lax.Precision.HIGHEST)


def per_feature_max_cosine(decoder: jax.Array, features: jax.Array) -> np.ndarray:
    """(n,) max over latents of cos(decoder row, feature i)."""
    return np.asarray(jnp.max(cosine_matrix(decoder, features), axis=0))


def recovery_rate(
    decoder: jax.Array,
    features: jax.Array,
    thresholds: Sequence[float] = (0.8, 0.9),
    *,
    matching: str = "max",
) -> dict[float, float]:
    """Feature recovery rate {tau: fraction of the n features recovered at cosine >= tau}.

    decoder: (M, d) latent directions; features: (n, d) true V. See the module docstring.
    """
    val.check_choice(matching, "matching", ("max", "hungarian"))
    cos = np.asarray(cosine_matrix(decoder, features))
    if matching == "max":
        best = cos.max(axis=0)
    else:
        m = core_metrics.hungarian_match(cos, maximize=True)
        best = np.full(cos.shape[1], -1.0)
        best[m.cols] = cos[m.rows, m.cols]
    return {float(t): float(np.mean(best >= t)) for t in thresholds}


def fvu(x: jax.Array, x_hat: jax.Array) -> float:
    """Fraction of variance unexplained over a set of samples x, x_hat (N, d)."""
    x = val.check_array(x, "x", ndim=2, dtype="float")
    x_hat = val.check_array(x_hat, "x_hat", shape=x.shape, dtype="float")
    resid = jnp.sum((x - x_hat) ** 2)
    var = jnp.sum((x - jnp.mean(x, axis=0, keepdims=True)) ** 2)
    return float(resid / var)


def explained_variance(x: jax.Array, x_hat: jax.Array) -> float:
    return 1.0 - fvu(x, x_hat)


def mean_l0(codes: jax.Array) -> float:
    """Mean number of non-zero latents per sample, codes (N, M)."""
    codes = val.check_array(codes, "codes", ndim=2)
    return float(jnp.mean(jnp.sum(codes != 0, axis=1)))


def dead_fraction(fire_counts: jax.Array) -> float:
    """Fraction of latents whose fire count (M,) over the window is zero."""
    c = np.asarray(val.check_array(fire_counts, "fire_counts", ndim=1, dtype="numeric"))
    return float(np.mean(c == 0))


def max_cosine_consistency(dec_a: jax.Array, dec_b: jax.Array, threshold: float = 0.9):
    """(mcs (Ma,), fraction of latents of a with mcs > threshold)."""
    mcs = np.asarray(jnp.max(cosine_matrix(dec_a, dec_b), axis=1))
    return mcs, float(np.mean(mcs > threshold))


def frequency_histogram(freqs, bins: int | Sequence[float] = 20, *, low: float = 1e-6):
    """Histogram of log10(max(freq, low)); returns (counts, edges in log10 units)."""
    f = np.log10(np.maximum(np.asarray(freqs, np.float64), low))
    if isinstance(bins, int):
        bins = np.linspace(np.log10(low), 0.0, bins + 1)
    return np.histogram(f, bins=bins)


def _add_moments(acc: tuple, n: int, mean: np.ndarray, m2: np.ndarray) -> tuple:
    """Merge a batch's (rows, mean (d,), centred sum of squares (d,)) into the running ones
    (Chan et al.'s pairwise update, in float64): streaming, no one-pass sum x^2 - (sum x)^2 / n."""
    n_a, mean_a, m2_a = acc
    if n_a == 0:
        return n, mean, m2
    total = n_a + n
    delta = mean - mean_a
    return total, mean_a + delta * (n / total), m2_a + m2 + delta**2 * (n_a * n / total)


def evaluate(model, batches: Iterable) -> dict:
    """FVU, explained variance, mean L0, dead fraction and per-latent frequencies of `model`
    (inference mode) over `batches` of (B, d) arrays (one jitted encode per batch, one pass).

    The FVU denominator is the centred sum of squares: each batch's is taken about its own mean
    and the batches are merged in float64, so data with a large mean (|mean| >> spread) keeps
    its accuracy. Raises ValueError for batches that are not (B, d) or when there are no rows."""
    from flax import nnx

    graphdef, state = nnx.split(model)

    @jax.jit
    def one(state, x):
        m = nnx.merge(graphdef, state)
        codes = m.encode(x)
        xh = m.decode(codes)
        mean = jnp.mean(x, 0, keepdims=True)
        return jnp.sum((x - xh) ** 2), mean[0], jnp.sum((x - mean) ** 2, 0), jnp.sum(codes > 0, 0)

    moments: tuple = (0, None, None)
    resid, fires = 0.0, np.zeros((model.width,), np.int64)
    for i, x in enumerate(batches):
        x = jnp.asarray(x)
        if x.ndim != 2 or x.shape[1] != model.d:
            raise ValueError(f"batches: batch {i} has shape {tuple(x.shape)}, expected (batch, {model.d})")
        if x.shape[0] == 0:
            continue
        r, mean, m2, f = jax.device_get(one(state, x))
        moments = _add_moments(moments, int(x.shape[0]), np.asarray(mean, np.float64), np.asarray(m2, np.float64))
        resid, fires = resid + float(r), fires + np.asarray(f, np.int64)
    n = moments[0]
    if n == 0:
        raise ValueError("batches: no rows to evaluate")
    out_fvu = resid / float(np.sum(moments[2]))
    return dict(
        fvu=out_fvu,
        explained_variance=1.0 - out_fvu,
        l0=float(fires.sum() / n),
        dead_fraction=float(np.mean(fires == 0)),
        frequencies=fires / n,
        samples=int(n),
    )
