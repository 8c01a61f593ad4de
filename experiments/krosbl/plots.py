"""Figures of the KroSBL reproduction: medians with interquartile bands (the tables show medians),
and the paper's published values beside ours wherever the paper gives numbers for this problem."""
from __future__ import annotations

import numpy as np

from experiments.krosbl import trials as T

# One colour per method in every figure of the family.
COLORS = {meth: f"C{i}" for i, meth in enumerate(T.LABELS)}
PAPER_STYLE = dict(marker="x", linestyle=":", markersize=9, alpha=0.8)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _sweep_figure(plt, name, xs, xlabel, sweep, paper=None):
    """NMSE median with its interquartile band and mean SRR vs the swept value; `paper`:
    {method: {x: (median NMSE, SRR)}} drawn as crosses on dotted lines."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for meth, arr in sweep.items():
        color = COLORS[meth]
        q25, q50, q75 = np.percentile(np.asarray(arr["nmse"]), [25, 50, 75], axis=-1)
        a1.semilogy(xs, q50, "o-", color=color, label=f"{T.LABELS[meth]} ({np.shape(arr['nmse'])[-1]} trials)")
        a1.fill_between(xs, q25, q75, color=color, alpha=0.15, linewidth=0)
        a2.plot(xs, np.mean(arr["srr"], axis=-1), "o-", color=color, label=T.LABELS[meth])
        ref = (paper or {}).get(meth)
        if ref:
            px = sorted(ref)
            a1.semilogy(px, [ref[x][0] for x in px], color=color, label=f"{T.LABELS[meth]}, paper", **PAPER_STYLE)
            a2.plot(px, [ref[x][1] for x in px], color=color, **PAPER_STYLE)
    a1.set(xlabel=xlabel, ylabel="NMSE: median, band = 25-75 % of trials")
    a2.set(xlabel=xlabel, ylabel="support recovery rate (mean over trials)", ylim=(-0.02, 1.02))
    a1.grid(True, which="both", alpha=0.3)
    a2.grid(True, alpha=0.3)
    a1.legend(fontsize=7)
    fig.suptitle(name if not paper else f"{name} (crosses: the paper's reference-code values)")
    fig.tight_layout()
    return fig


def _convergence_figure(plt, name, curves_by_setting, titles, paper):
    """NMSE per EM iteration; `paper`: {setting: {method: final NMSE}} drawn as dotted levels, or
    None when the problem is not the paper's (its values would not be comparable)."""
    fig, axes = plt.subplots(1, len(curves_by_setting), figsize=(10, 4), sharey=True, squeeze=False)
    for ax, (setting, curves) in zip(axes[0], curves_by_setting.items()):
        for meth, tr in curves.items():
            ax.loglog(np.arange(1, len(tr) + 1), tr, label=T.LABELS[meth], color=COLORS[meth])
            level = (paper or {}).get(setting, {}).get(meth)
            if level is not None:
                ax.axhline(level, color=COLORS[meth], linestyle=":", label=f"{T.LABELS[meth]}, paper's final")
        ax.set(title=titles.get(setting, setting), xlabel="EM iteration")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0][0].set_ylabel("NMSE")
    fig.suptitle(name)
    fig.tight_layout()
    return fig


def _time_figure(plt, ks, tk):
    fig, ax = plt.subplots(figsize=(5, 4))
    for meth, ts in tk.items():
        ax.semilogy(ks, ts["s_per_trial"], "o-", label=f"{T.LABELS[meth]}, wall", color=COLORS[meth])
        ax.semilogy(ks, ts["cpu_s_per_trial"], "s--", label=f"{T.LABELS[meth]}, process CPU", color=COLORS[meth],
                    alpha=0.6)
    ax.set(xlabel="sparsity K (per factor)", ylabel="seconds per trial (median, compile excluded)",
           title="Run time vs K (this machine)", xticks=list(ks))
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def write_plots(out_dir, results, *, snrs, m1s, ks, paper_fig5, paper_conv, conv_titles) -> list[str]:
    """Write the figures the results hold; returns their file names. paper_fig5: {method: {M_1:
    (median NMSE, SRR)}}; paper_conv: {"fig2"/"fig4": {setting: {method: NMSE}} or None}."""
    plt = _pyplot()
    ratio = {m1: m1 * 12 * 15 / 3375 for m1 in m1s}
    fig5_paper = {m: {ratio[m1]: v for m1, v in ref.items() if m1 in ratio} for m, ref in paper_fig5.items()}
    panels = [("fig3a", snrs, "SNR (dB)", "Fig. 3(a): known noise, K = 3, M_1 = 8", None),
              ("fig3b", list(ratio.values()), "under-sampling ratio M/N", "Fig. 3(b): known noise, K = 3, 25 dB",
               None),
              ("fig3c", ks, "sparsity K (per factor)", "Fig. 3(c): known noise, M_1 = 8, 25 dB", None),
              ("fig5", list(ratio.values()), "under-sampling ratio M/N", "Fig. 5: learned noise, K = 3, 25 dB",
               fig5_paper)]
    figures = []
    for name, xs, xlabel, title, paper in panels:
        if name in results and len(xs) >= 2:
            figures.append((name, _sweep_figure(plt, title, xs, xlabel, results[name], paper)))
    for name in ("fig2", "fig4"):
        if name in results:
            figures.append((name, _convergence_figure(plt, conv_titles[name], results[name], conv_titles,
                                                      paper_conv.get(name))))
    if results.get("time_vs_k"):
        figures.append(("time_vs_k", _time_figure(plt, ks, results["time_vs_k"])))
    written = []
    for name, fig in figures:
        fig.savefig(out_dir / f"{name}.png", dpi=120)
        plt.close(fig)
        written.append(f"{name}.png")
    return written
