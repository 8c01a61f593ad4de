"""Timing helper, plots, results.json and the Markdown summary of the KroSBL reproduction."""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from experiments._timing import time_call
from experiments.krosbl import trials as T
from jsparse.core import records
from jsparse.sbl import krosbl


def time_vs_k(ks, *, trials, methods, cache=None):
    """Per-trial seconds (compile excluded; wall and CPU medians) of a vmapped batch of `trials`
    trials, known σ², M_1 = 8, 25 dB. `cache`: JSON file of finished (method, K) entries."""
    done = records.read_json(cache) if cache is not None and Path(cache).exists() else {}
    for k in ks:
        keys = jax.random.split(jax.random.PRNGKey(7), trials)
        probs = jax.vmap(lambda kk: T.problem(kk, n=T.N_PAPER, m=(8, 12, 15), k=k, snr_db=25.0))(keys)
        for meth in methods:
            tag = f"{meth}_K{k}_{trials}"
            if tag in done:
                continue
            fn = jax.jit(jax.vmap(lambda y, f, nv, meth=meth: krosbl(y, f, method=meth, noise_var=nv).x))
            t = time_call(fn, (probs.y, probs.factors, probs.noise_var), repeats=1)
            done[tag] = {"s_per_trial": t.median_s / trials, "cpu_s_per_trial": t.cpu_median_s / trials,
                         "compile_s": t.compile_s}
            if cache is not None:
                records.write_json(cache, done)
    fields = ("s_per_trial", "cpu_s_per_trial", "compile_s")
    return {m: {key: [done[f"{m}_K{k}_{trials}"][key] for k in ks] for key in fields} for m in methods}


def _fmt(v):
    return "—" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.2e}"


# One colour per method in every figure of the family.
COLORS = {meth: f"C{i}" for i, meth in enumerate(T.LABELS)}


def _plot_sweeps(out_dir, results, snrs, m1s, ks) -> list[str]:
    """Write the figures the results hold; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratio = [m1 * 12 * 15 / 3375 for m1 in m1s]
    panels = [("fig3a", snrs, "SNR (dB)"), ("fig3b", ratio, "under-sampling ratio M/N"),
              ("fig3c", ks, "sparsity K (per factor)"),
              ("fig5", ratio, "under-sampling ratio M/N (unknown noise variance)")]
    written = []
    for name, xs, xlabel in panels:
        if name not in results or len(xs) < 2:
            continue
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        for meth, arr in results[name].items():
            a1.semilogy(xs, np.mean(arr["nmse"], axis=-1), "o-", label=T.LABELS[meth], color=COLORS[meth])
            a2.plot(xs, np.mean(arr["srr"], axis=-1), "o-", label=T.LABELS[meth], color=COLORS[meth])
        a1.set_xlabel(xlabel)
        a1.set_ylabel("NMSE (mean over trials)")
        a1.grid(True, which="both", alpha=0.3)
        a2.set_xlabel(xlabel)
        a2.set_ylabel("support recovery rate")
        a2.grid(True, alpha=0.3)
        a1.legend()
        fig.tight_layout()
        fig.savefig(out_dir / f"{name}.png", dpi=120)
        written.append(f"{name}.png")
        plt.close(fig)
    for name in ("fig2", "fig4"):
        if name not in results:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        for ax, (setting, curves) in zip(axes, results[name].items()):
            for meth, tr in curves.items():
                ax.loglog(np.arange(1, len(tr) + 1), tr, label=T.LABELS[meth], color=COLORS[meth])
            ax.set_title(f"{name}: {setting}")
            ax.set_xlabel("EM iteration")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].set_ylabel("NMSE")
        for ax in axes:
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / f"{name}.png", dpi=120)
        written.append(f"{name}.png")
        plt.close(fig)
    tk = results.get("time_vs_k", {})
    if not tk:
        return written
    fig, ax = plt.subplots(figsize=(5, 4))
    for meth, ts in tk.items():
        ax.semilogy(ks, ts["s_per_trial"], "o-", label=T.LABELS[meth], color=COLORS[meth])
    ax.set_xlabel("sparsity K (per factor)")
    ax.set_ylabel("seconds per trial")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "time_vs_k.png", dpi=120)
    plt.close(fig)
    return written + ["time_vs_k.png"]


def _last(tr):
    tr = np.asarray(tr)
    ok = np.isfinite(tr)
    return float(tr[ok][-1]) if ok.any() else float("nan")


def write(out_dir: Path, results, ref2, ref4, ref_time, snrs, m1s, ks) -> str:
    plots = _plot_sweeps(out_dir, results, snrs, m1s, ks)
    s = results["settings"]
    mode = "quick" if s["quick"] else "full"
    lines = [f"# KroSBL reproduction ({mode}: {s['trials']} trials, cSBL {s['csbl_trials']} trials, float64)", ""]
    lines += ["## Default point (M_1 = 8, K = 3, 25 dB, unknown σ²; Fig. 5 sweep) vs the reference code's result files",
              "",
              "| method | median NMSE | mean NMSE | mean SRR | s / trial (vmapped sweep) "
              "| ref. median | ref. mean | ref. SRR | ref. MATLAB s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m1 in (8, 10):
        if m1 not in m1s or "fig5" not in results:
            continue
        j = m1s.index(m1)
        lines.append(f"| **M_1 = {m1}** | | | | | | | | |")
        rows = dict(results["fig5"])
        if m1 == 8 and "csbl" in results.get("default_csbl", {}):
            csbl = results["default_csbl"]["csbl"]
            rows["csbl"] = {k: (v if k == "_meta" else v[None, ...][[0] * len(m1s)]) for k, v in csbl.items()}
            rows["csbl"]["_meta"] = dict(rows["csbl"]["_meta"], trials=rows["csbl"]["_meta"]["trials"] / len(m1s))
        for meth, arr in rows.items():
            e, r = arr["nmse"][j], arr["srr"][j]
            meta = arr["_meta"]
            per = meta["wall_s"] / (meta["trials"] * len(m1s))
            ref = ref_time[m1].get(meth, (None,) * 4)
            lines.append(f"| {T.LABELS[meth]} | {_fmt(float(np.median(e)))} | {_fmt(float(np.mean(e)))} "
                         f"| {np.mean(r):.3f} | {per:.3f} | "
                         f"{_fmt(ref[1])} | {_fmt(ref[0])} | {ref[2]} | {ref[3]} |")
    convergence = (("fig2", "Fig. 2 (known σ², K = 4, 30 dB)"),
                   ("fig4", "Fig. 4 (i.i.d. values, K = 4, 30 dB, no pruning)"))
    conv_methods = ["am", "svd", "ksbl", "csbl"]
    for name, label in convergence:
        if name not in results:
            continue
        ref = ref2 if name == "fig2" else ref4
        lines += ["", f"## {label}: final NMSE (problem {results['convergence_problem']})", "",
                  "| setting | " + " | ".join(T.LABELS[m] for m in conv_methods) + " |", "|---|---|---|---|---|"]
        for setting, curves in results[name].items():
            ref_setting = ref.get(setting, {})
            ours = " | ".join(f"{_fmt(_last(curves[m]) if m in curves else None)} (ref {_fmt(ref_setting.get(m))})"
                              for m in conv_methods)
            lines.append(f"| {setting} | {ours} |")
    for name, xs, xl in (("fig3a", snrs, "SNR dB"), ("fig3b", m1s, "M_1"), ("fig3c", ks, "K"), ("fig5", m1s, "M_1")):
        if name not in results:
            continue
        lines += ["",
                  f"## {name}: median NMSE / mean SRR vs {xl} "
                  "(paper: curves only; expect SVD ≈ AM ≪ KSBL, cSBL; KOMP worst)",
                  "",
                  "| method | " + " | ".join(str(x) for x in xs) + " |", "|---|" + "---|" * len(xs)]
        for meth, arr in results[name].items():
            cells = " | ".join(f"{_fmt(float(np.median(arr['nmse'][i])))} / {np.mean(arr['srr'][i]):.2f}"
                               for i in range(len(xs)))
            lines.append(f"| {T.LABELS[meth]} | {cells} |")
    lines += ["", "## Run time per trial vs K (known σ², M_1 = 8, 25 dB; compile excluded)", "",
              "| method | " + " | ".join(f"K={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for meth, ts in results.get("time_vs_k", {}).items():
        cells = " | ".join(f"{t * 1e3:.1f} ms (CPU {c * 1e3:.1f})"
                           for t, c in zip(ts["s_per_trial"], ts["cpu_s_per_trial"]))
        lines.append(f"| {T.LABELS[meth]} | {cells} |")
    sweeps = ("fig3a", "fig3b", "fig3c", "fig5", "default_csbl")
    sweep_t = {f"{name}/{m}": round(arr["_meta"]["wall_s"], 1) for name in sweeps
               for m, arr in results.get(name, {}).items()}
    lines += ["", f"Sweep wall times (s, compile included): {sweep_t}"]
    lines += ["", f"Total wall time: {results['total_seconds']:.0f} s. "
                  f"Plots: {', '.join(plots) if plots else 'none (too few sweep points)'}."]
    summary = "\n".join(lines) + "\n"
    (out_dir / "summary.md").write_text(summary)
    records.write_json(out_dir / "results.json", records.to_builtin(results))
    return summary
