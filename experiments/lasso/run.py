"""Foundation demo: sparse recovery with FISTA vs ISTA vs an oracle, NMSE and support recovery vs SNR.

A Monte Carlo sweep through `jsparse.core.montecarlo.sweep` (vmapped, chunked, resumable):
Gaussian A (M=64, N=128), K=8-sparse x, lam chosen from the noise level
(universal threshold lam = sigma sqrt(2 log N)), SNR in {0, 10, 20, 30, 40} dB.
There is no paper number for this demo; the oracle least squares on the true support is the bound.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _env  # noqa: F401
from jsparse import lasso
from jsparse.core import metrics, montecarlo, records

M, N, K = 64, 128, 8
SNRS = [0.0, 10.0, 20.0, 30.0, 40.0]


def trial(key, snr_db, method):
    k_a, k_s, k_v, k_n = jax.random.split(key, 4)
    A = jax.random.normal(k_a, (M, N)) / jnp.sqrt(M)
    support = jax.random.permutation(k_s, N)[:K]
    x = jnp.zeros(N).at[support].set(jax.random.normal(k_v, (K,)))
    clean = A @ x
    sigma = jnp.sqrt(jnp.sum(clean**2) / M / 10 ** (snr_db / 10))
    y = clean + sigma * jax.random.normal(k_n, (M,))
    if method == "oracle":
        mask = jnp.zeros(N, bool).at[support].set(True)
        As = jnp.where(mask[None, :], A, 0.0)
        x_hat = jnp.linalg.lstsq(As, y)[0] * mask
        iters = jnp.asarray(0)
    else:
        lam = sigma * jnp.sqrt(2.0 * jnp.log(N))  # universal threshold (unit-norm columns)
        solve = lasso.fista if method == "fista" else lasso.ista
        res = solve(A, y, lam, max_iters=2000, tol=1e-7)
        x_hat, iters = res.x, res.iterations
    return {"nmse": metrics.nmse(x_hat, x), "support": metrics.support_jaccard(x_hat, x, 1e-2), "iterations": iters}


def run(out_dir: Path, *, quick: bool = True, resume: bool = True, **_options) -> str:
    out_dir = Path(out_dir)
    num_trials = 100 if quick else 1000
    methods = ["fista", "ista", "oracle"]
    res = montecarlo.sweep(
        trial,
        {"snr_db": SNRS, "method": methods},
        num_trials=num_trials,
        key=0,
        chunk_size=250,
        out_dir=out_dir / "checkpoints" if resume else None,
        name=f"lasso_{num_trials}",
        on_mismatch="recompute",  # saved chunks of other code or settings are deleted, never reused
    )
    nmse = np.median(res.arrays["nmse"], axis=-1)  # (snr, method)
    supp = np.mean(res.arrays["support"], axis=-1)
    iters = np.median(res.arrays["iterations"], axis=-1)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    styles = {"fista": "s--", "ista": "o:", "oracle": "^-"}  # FISTA and ISTA coincide by design
    for j, m in enumerate(methods):
        axes[0].semilogy(SNRS, nmse[:, j], styles[m], label=m, markerfacecolor="none")
        axes[1].plot(SNRS, supp[:, j], styles[m], label=m, markerfacecolor="none")
    axes[0].set(xlabel="SNR (dB)", ylabel="median NMSE", title=f"LASSO recovery, M={M}, N={N}, K={K}")
    axes[1].set(xlabel="SNR (dB)", ylabel="support recovery (Jaccard)", ylim=(0, 1.05))
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out_dir / "lasso_nmse_support.png", dpi=120)
    plt.close(fig)

    columns = [f"{m} NMSE" for m in methods] + ["FISTA support", "FISTA iters", "ISTA iters"]
    header = "| SNR (dB) | " + " | ".join(columns) + " |"
    lines = [header, "|---" * (len(methods) + 4) + "|"]
    for i, snr in enumerate(SNRS):
        lines.append(
            f"| {snr:.0f} | " + " | ".join(f"{nmse[i, j]:.2e}" for j in range(len(methods)))
            + f" | {supp[i, 0]:.2f} | {iters[i, 0]:.0f} | {iters[i, 1]:.0f} |"
        )
    summary = (
        f"Median NMSE and mean support recovery over {num_trials} trials (no paper reference: the oracle "
        "least squares on the true support is the bound). Compile "
        f"{sum(res.meta['compile_seconds'].values()):.1f} s, run {res.meta['run_seconds']:.1f} s.\n\n"
        + "\n".join(lines) + "\n"
    )
    (out_dir / "summary.md").write_text(summary)
    records.write_json(
        out_dir / "results.json",
        {"settings": {"M": M, "N": N, "K": K, "snr_db": SNRS, "num_trials": num_trials, "seed": 0},
         "median_nmse": {m: nmse[:, j] for j, m in enumerate(methods)},
         "mean_support": {m: supp[:, j] for j, m in enumerate(methods)},
         "meta": res.meta},
    )
    return summary


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m experiments.lasso.run", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--full", action="store_true",
                   help="1000 trials per SNR and method instead of 100 (default: quick, 100 trials)")
    p.add_argument("--out", type=Path, default=Path("results/lasso"),
                   help="output folder (results.json, summary.md, lasso_nmse_support.png, checkpoints)")
    return p


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    print(run(a.out, quick=not a.full))


if __name__ == "__main__":
    main()
