"""Matplotlib figures for unmixing results (Agg backend; host-side NumPy inputs).

* `plot_abundance_maps`: rows = methods (plus the ground truth), columns = endmembers.
* `plot_guidance`: the learned guidance map next to the ground-truth purity max_k A_kn.
* `plot_band_residuals`: per-band RMS residuals of several methods, corrupted bands shaded.
Maps use column-major pixel order (`datasets.to_maps`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jsparse.unmixing.datasets import to_maps

__all__ = ["plot_abundance_maps", "plot_guidance", "plot_band_residuals"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label_axes(ax, shape, row_label=""):
    """Pixel-grid axes: a few ticks, 'column' / 'row' labels (row_label is prefixed to the row label)."""
    H, W = (int(v) for v in shape)
    ax.set_xticks([0, W - 1])
    ax.set_yticks([0, H - 1])
    ax.tick_params(labelsize=6, length=2)
    ax.set_xlabel("pixel column", fontsize=6, labelpad=1)
    ax.set_ylabel((row_label + "\n" if row_label else "") + "pixel row", fontsize=7, labelpad=1)


def plot_abundance_maps(path, maps: dict, shape, names=None, title=""):
    """maps: {row label: (R, N) abundances (already matched to the ground-truth order)}.

    One image per (row, endmember), each with its own colour bar (abundance, 0 to 1) and labelled
    pixel axes.
    """
    plt = _plt()
    rows = list(maps)
    R = np.asarray(maps[rows[0]]).shape[0]
    fig, axes = plt.subplots(len(rows), R, figsize=(2.6 * R, 2.3 * len(rows)), squeeze=False)
    for i, label in enumerate(rows):
        m = to_maps(np.asarray(maps[label]), shape)
        for k in range(R):
            ax = axes[i, k]
            im = ax.imshow(m[k], vmin=0, vmax=1, cmap="viridis")
            cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
            cb.ax.tick_params(labelsize=6)
            cb.set_label("abundance", fontsize=6)
            _label_axes(ax, shape, label if k == 0 else "")
            ax.set_title(f"{label}: {names[k] if names else f'endmember {k + 1}'}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(path), dpi=110)
    plt.close(fig)


def plot_guidance(path, guidance, true_abundances, shape, title=""):
    plt = _plt()
    h = np.asarray(guidance).reshape(tuple(shape), order="F")
    purity = np.asarray(true_abundances).max(axis=0).reshape(tuple(shape), order="F")
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
    im = axes[0].imshow(h, cmap="magma")
    axes[0].set_title(f"learned guidance h ({np.mean(h > 0):.0%} non-zero)", fontsize=8)
    fig.colorbar(im, ax=axes[0], fraction=0.046).set_label("guidance weight h_n", fontsize=7)
    im = axes[1].imshow(purity, vmin=0, vmax=1, cmap="magma")
    axes[1].set_title("ground-truth purity max_k A_kn", fontsize=8)
    fig.colorbar(im, ax=axes[1], fraction=0.046).set_label("purity", fontsize=7)
    for ax in axes:
        _label_axes(ax, shape)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(path), dpi=110)
    plt.close(fig)


def plot_band_residuals(path, residuals: dict, outlier_bands=None, title=""):
    """residuals: {label: (L,) per-band RMS residual}; outlier_bands: (L,) bool mask to shade."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3))
    if outlier_bands is not None:
        for l in np.flatnonzero(np.asarray(outlier_bands)):
            ax.axvspan(l - 0.5, l + 0.5, color="red", alpha=0.15, lw=0)
    for label, r in residuals.items():
        ax.semilogy(np.asarray(r), label=label, lw=1)
    ax.set_xlabel("band")
    ax.set_ylabel("RMS residual")
    ax.legend(fontsize=7)
    ax.set_title(title + (" (shaded: corrupted bands)" if outlier_bands is not None else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(path), dpi=110)
    plt.close(fig)
