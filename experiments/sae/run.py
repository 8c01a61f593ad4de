"""GBA reproduction on the paper's statistical model X = H V.

Sections (each run cached in out_dir/runs/<name>.json, so a re-run resumes):
  1. recovery tables: every method in light (d > sqrt n) and heavy (d < sqrt n) superposition;
     TopK / BatchTopK at GBA's measured L0 (same sparsity) and TopK at k = s (oracle k).
  2. imbalanced toy (paper, ICLR): n = 128, d = 42, half the samples s = 3, half s = 20.
  3. heterogeneous frequencies (power law, 100x ratio): recovery of the rarest features.
  4. resonance heatmap: BA recovery vs target frequency p and feature frequency f = s / n.
  5. reconstruction-vs-L0 frontier: FVU against L0 for sweeps of k, lambda, targets.

    python -m experiments sae --quick --out results      (<= ~3 min on 2 cores)
    python -m experiments.sae.run --full --out results   (our target problem: n=512, d=128, s=8,
                                                          2,000,000 samples, width 1024)
"""
from __future__ import annotations

from experiments import _env  # noqa: F401  (XLA flags before jax)

# isort: split

import argparse
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments.sae import report
from experiments.sae.toy import SEEDS as TOY_SEEDS
from jsparse import sae
from jsparse.core import records
from jsparse.core.code_fingerprint import code_fingerprint
from jsparse.sae import metrics

_CACHED_ONLY = False

PAPER_TOY = {  # ICLR version, imbalanced-sparsity toy: (FRR@0.8, FRR@0.9) in %
    "topk k=20": (100.0, 98.4), "topk k=30": (98.4, 24.2), "topk k=50": (94.5, 23.4), "gba": (100.0, 100.0),
}


def settings(quick: bool) -> dict:
    if quick:
        return dict(
            problems={
                "light": dict(n=64, d=32, s=3, width=256),
                "heavy": dict(n=256, d=14, s=2, width=512),  # 14 < 16 = sqrt 256; d = 8 sat at chance
            },
            methods={"light": "all", "heavy": ("gba", "ba", "topk")},
            steps=1500, batch=256, eval_batches=20,
            toy=dict(n=128, d=42, width=512, steps=1500, topk=(20,), wrong=False, seeds=(0,)),
            hetero=dict(n=64, d=32, s=3, width=256),
            heat=[dict(label="light", n=64, d=32, width=256, s=[1, 3, 8], p=[0.005, 0.03, 0.2], steps=800)],
            frontier=dict(topk=[2, 6], relu_l1=[0.1], jumprelu=[0.03]),
        )
    return dict(
        problems={
            "light": dict(n=512, d=128, s=8, width=1024),  # our target problem (128 > sqrt 512)
            "heavy": dict(n=512, d=16, s=3, width=1024),  # 16 < sqrt 512 = 22.6
        },
        methods={"light": "all", "heavy": "all"},
        steps=3907, batch=512, eval_batches=50,  # 3907 x 512 = 2,000,384 samples
        toy=dict(n=128, d=42, width=1024, steps=3907, topk=(20, 50, 30), wrong=True, seeds=(0, 1, 2)),
        hetero=dict(n=512, d=128, s=8, width=1024),
        heat=[dict(label="light", n=256, d=64, width=512, s=[1, 4, 16], p=[0.002, 0.005, 0.02, 0.05, 0.2],
                   steps=1000),  # 64 > sqrt 256
              dict(label="heavy", n=512, d=16, width=1024, s=[1, 3, 12], p=[0.002, 0.005, 0.02, 0.05, 0.2],
                   steps=1000)],  # 16 < sqrt 512 (d = 8 with n = 256 is too close to chance: 22 % at 0.9)
        frontier=dict(relu_l1=[0.1], jumprelu=[0.003], topk=[32]),  # + every cached light_* run
    )


def _evaluate(model, stream, num_batches, features):
    ev = metrics.evaluate(model, [stream.batch(10**7 + j) for j in range(num_batches)])
    dec = model.decoder_weight()
    rec = metrics.recovery_rate(dec, features, (0.8, 0.9))
    hun = metrics.recovery_rate(dec, features, (0.9,), matching="hungarian")
    counts, edges = metrics.frequency_histogram(ev["frequencies"], bins=24)
    return dict(
        frr08=rec[0.8], frr09=rec[0.9], frr09_hungarian=hun[0.9], fvu=ev["fvu"],
        explained_variance=ev["explained_variance"], l0=ev["l0"], dead=ev["dead_fraction"],
        eval_samples=ev["samples"], freq_hist=counts, freq_edges=edges,
        feature_maxcos=metrics.per_feature_max_cosine(dec, features),
    )


def _fingerprint(stream, **settings) -> str:
    """Hash of the problem (its features and first two batches), the run settings and the code that
    trains and scores a run (code fingerprints of `sae.train` and `_evaluate`): edited code retrains."""
    code = [code_fingerprint(sae.train), code_fingerprint(_evaluate)]
    return records.fingerprint(dict(settings, code=code), (stream.features, stream.batch(0), stream.batch(1)))


def _run(out: Path, name: str, stream, resume: bool, *, method, width, steps, eval_batches, seed=1, **kw):
    path = out / "runs" / f"{name}.json"
    key = _fingerprint(stream, method=method, width=width, steps=steps, eval_batches=eval_batches, seed=seed, **kw)
    if resume and path.exists():
        cached = records.read_json(path)
        if cached.get("fingerprint") == key or _CACHED_ONLY:
            return cached
        # Same name, different problem or settings: never reuse a stale result silently.
        print(f"[sae] {name}: cached run has other settings; recomputing", flush=True)
    if _CACHED_ONLY:  # summarise what finished; train nothing
        return None
    t0 = time.perf_counter()
    model, hist = sae.train(stream, method=method, width=width, steps=steps, key=jax.random.PRNGKey(seed),
                            log_every=max(steps // 50, 1), show_progress=False, **kw)
    wall = time.perf_counter() - t0
    res = dict(name=name, fingerprint=key, method=method, width=width, steps=steps, settings=kw, seed=seed, wall_s=wall,
               history={k: v for k, v in hist.items() if k in ("step", "fvu", "l0", "dead")},
               **_evaluate(model, stream, eval_batches, stream.features))
    records.write_json(path, res)
    return records.read_json(path)


def _stream(seed, batch, **p):
    return sae.make_stream(jax.random.PRNGKey(seed), n=p["n"], d=p["d"], s=p["s"], batch_size=batch,
                           **{k: v for k, v in p.items() if k in ("frequencies", "ratio")})


def recovery_tables(out, cfg, resume):
    rows = []
    for label, p in cfg["problems"].items():
        st = _stream(0, cfg["batch"], **p)
        common = dict(width=p["width"], steps=cfg["steps"], eval_batches=cfg["eval_batches"])
        g = _run(out, f"{label}_gba", st, resume, method="gba", **common)
        if g is None:
            continue
        k_match = max(int(round(g["l0"])), 1)
        runs = [g, _run(out, f"{label}_topk_k{k_match}", st, resume, method="topk", k=k_match, **common)]
        if cfg["methods"][label] == "target":  # GBA vs TopK at the same L0 only
            continue
        runs.append(_run(out, f"{label}_ba", st, resume, method="ba", **common))
        if cfg["methods"][label] == "all":
            runs.append(_run(out, f"{label}_batchtopk_k{k_match}", st, resume, method="batchtopk", k=k_match,
                             **common))
            runs.append(_run(out, f"{label}_topk_k{p['s']}", st, resume, method="topk", k=p["s"], **common))
            runs.append(_run(out, f"{label}_relu_l1", st, resume, method="relu_l1", **common))
            runs.append(_run(out, f"{label}_jumprelu", st, resume, method="jumprelu", **common))
        for r in (r for r in runs if r is not None):
            rows.append(dict(problem=label, **{k: p[k] for k in ("n", "d", "s", "width")}, run=r["name"],
                             method=r["method"], k=r["settings"].get("k"), frr08=r["frr08"], frr09=r["frr09"],
                             frr09_hungarian=r["frr09_hungarian"], fvu=r["fvu"], l0=r["l0"], dead=r["dead"],
                             wall_s=r["wall_s"]))
    return rows


def _toy_seed(out, cfg, resume, j):
    """The toy's runs for seed pair j of TOY_SEEDS (names of pair 0 carry no suffix); pair 0 at the
    paper's d = 42 also runs BA and the GBA range variants."""
    t = cfg["toy"]
    data_seed, init_seed = TOY_SEEDS[j]
    st = sae.synthetic.make_mixture_stream(jax.random.PRNGKey(data_seed), n=t["n"], d=t["d"], s=(3, 20),
                                           batch_size=cfg["batch"])
    pre = ("toy" if t["d"] == 42 else f"toy_d{t['d']}") + ("" if j == 0 else f"_seed{j}")
    common = dict(width=t["width"], steps=t["steps"], eval_batches=cfg["eval_batches"], seed=init_seed)
    first = j == 0 and t["d"] == 42
    rows = [("gba", _run(out, f"{pre}_gba", st, resume, method="gba", **common))]
    if first:
        rows.append(("ba", _run(out, f"{pre}_ba", st, resume, method="ba", **common)))
    for i, k in enumerate(t["topk"]):
        rows.append((f"topk k={k}", _run(out, f"{pre}_topk_k{k}", st, resume, method="topk", k=k, **common)))
        if i == 0 and t["wrong"] and first:
            rows.append(("gba wrong range (0.5 -> 0.2)",
                         _run(out, f"{pre}_gba_wrong", st, resume, method="gba", htf=0.5, ltf=0.2, **common)))
            rows.append(("gba v1 range (0.1 -> 0.001)",
                         _run(out, f"{pre}_gba_htf0.1", st, resume, method="gba", htf=0.1, **common)))
    return [(m, r) for m, r in rows if r is not None]


def toy_rows(runs_by_method: dict) -> list[dict]:
    """One row per method: means over its seeds, and the per-seed FRR@0.9."""
    rows = []
    for m, rs in runs_by_method.items():
        mean = lambda key: float(np.mean([r[key] for r in rs]))  # noqa: E731
        rows.append(dict(method=m, seeds=len(rs), frr08=mean("frr08"), frr09=mean("frr09"),
                         frr09_seeds=[r["frr09"] for r in rs], l0=mean("l0"), dead=mean("dead"), fvu=mean("fvu"),
                         paper=PAPER_TOY.get(m)))
    return rows


def imbalanced_toy(out, cfg, resume):
    by_method: dict[str, list] = {}
    for j in cfg["toy"]["seeds"]:
        for m, r in _toy_seed(out, cfg, resume, j):
            by_method.setdefault(m, []).append(r)
    return toy_rows(by_method)


def heterogeneous(out, cfg, resume):
    p = dict(cfg["hetero"], frequencies="power_law", ratio=100.0)
    st = _stream(2, cfg["batch"], **p)
    freqs = st.frequencies(num_batches=20)
    rare = freqs <= np.quantile(freqs, 0.25)
    frequent = freqs >= np.quantile(freqs, 0.75)
    common: dict[str, Any] = dict(width=p["width"], steps=cfg["steps"], eval_batches=cfg["eval_batches"])
    g = _run(out, "hetero_gba", st, resume, method="gba", **common)
    if g is None:
        return [], None
    k = max(int(round(g["l0"])), 1)
    runs = [g, _run(out, "hetero_ba", st, resume, method="ba", **common),
            _run(out, f"hetero_topk_k{k}", st, resume, method="topk", k=k, **common),
            _run(out, f"hetero_topk_k{p['s']}", st, resume, method="topk", k=p["s"], **common)]
    rows = []
    for r in (r for r in runs if r is not None):
        mc = np.asarray(r["feature_maxcos"])
        rows.append(dict(run=r["name"], method=r["method"], l0=r["l0"], dead=r["dead"], frr09=r["frr09"],
                         rare_frr09=float(np.mean(mc[rare] >= 0.9)), rare_frr08=float(np.mean(mc[rare] >= 0.8)),
                         rare_mean_cos=float(np.mean(mc[rare])), frequent_frr09=float(np.mean(mc[frequent] >= 0.9)),
                         rare_count=int(rare.sum())))
    return rows, dict(freq_max=float(freqs.max()), freq_min=float(freqs.min()))


def resonance(out, cfg, resume):
    """One BA recovery grid (feature frequency f = s/n x target p) per panel (light, heavy)."""
    panels = []
    for h in cfg["heat"]:
        prefix = "heat" if h["label"] == "light" else f"heat{h['label']}_n{h['n']}_d{h['d']}"
        grid = np.full((len(h["s"]), len(h["p"])), np.nan)
        for i, s in enumerate(h["s"]):
            st = _stream(3, cfg["batch"], n=h["n"], d=h["d"], s=s)
            for j, p in enumerate(h["p"]):
                r = _run(out, f"{prefix}_s{s}_p{p}", st, resume, method="ba", target=p, width=h["width"],
                         steps=h["steps"], eval_batches=max(cfg["eval_batches"] // 4, 4))
                grid[i, j] = np.nan if r is None else r["frr09"]
        panels.append(dict(label=h["label"], f=[s / h["n"] for s in h["s"]], p=h["p"], frr09=grid, n=h["n"],
                           d=h["d"], width=h["width"], steps=h["steps"],
                           chance09=report.chance_frr(h["n"], h["d"], h["width"])))
    return panels


def frontier(out, cfg, resume):
    """FVU against L0 on the light problem (nothing when --problems leaves it out)."""
    if "light" not in cfg["problems"]:
        return []
    p = cfg["problems"]["light"]
    st = _stream(0, cfg["batch"], **p)
    common = dict(width=p["width"], steps=cfg["steps"], eval_batches=cfg["eval_batches"])
    pts = []
    for method, values in cfg["frontier"].items():
        for v in values:
            key = "k" if method == "topk" else ("l1" if method == "relu_l1" else "l0")
            r = _run(out, f"light_{method}_{key}{v}", st, resume, method=method, **{key: v}, **common)
            if r is None:
                continue
            pts.append(dict(method=method, param=v, l0=r["l0"], fvu=r["fvu"], frr09=r["frr09"]))
    for r in (records.read_json(f) for f in sorted((out / "runs").glob("light_*.json"))):
        if not any(q["method"] == r["method"] and q["l0"] == r["l0"] for q in pts):
            pts.append(dict(method=r["method"], param=r["settings"].get("k"), l0=r["l0"], fvu=r["fvu"],
                            frr09=r["frr09"]))
    return pts


def _plots(out, heat, front, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if heat:
        _heat_plot(plt, out, heat)
    if front:
        _front_plot(plt, out, front)
    if rows:
        _freq_plot(plt, out, rows)


def _heat_plot(plt, out, panels):
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False, layout="constrained")
    for ax, heat in zip(axes[0], panels):
        im = ax.imshow(heat["frr09"], origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(heat["p"])), [f"{p:g}" for p in heat["p"]])
        ax.set_yticks(range(len(heat["f"])), [f"{f:.3g}" for f in heat["f"]])
        ax.set_xlabel("BA target frequency p")
        ax.set_ylabel("feature frequency f = s/n")
        ax.set_title(f"{heat['label']}: FRR@0.9\nn={heat['n']}, d={heat['d']}, M={heat['width']}", fontsize=10)
    fig.colorbar(im, ax=axes[0].tolist(), label="FRR@0.9 (fraction of features)")
    fig.savefig(out / "resonance.png", dpi=120)
    plt.close(fig)


def _log_axis(axis):
    """Log axis with plain-number labels at 1-2-5 steps only (no crowded minor labels)."""
    from matplotlib import ticker

    axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def _front_plot(plt, out, front):
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for m in sorted({q["method"] for q in front}):
        q = sorted((x for x in front if x["method"] == m), key=lambda x: x["l0"])
        ax.plot([x["l0"] for x in q], [x["fvu"] for x in q], "o-", label=m)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_axis(ax.xaxis)
    _log_axis(ax.yaxis)
    ax.set_xlabel("mean L0 (active latents per sample)")
    ax.set_ylabel("FVU (fraction of variance unexplained)")
    ax.legend(fontsize=8)
    ax.set_title("reconstruction vs L0 (light problem)")
    fig.tight_layout()
    fig.savefig(out / "frontier.png", dpi=120)
    plt.close(fig)


def fired_histogram(counts, edges, never_fired: int):
    """(counts of the latents that fired, edges): `frequency_histogram` clamps a frequency of 0 to
    its lowest edge, so the first bin also holds the `never_fired` latents; they are taken out
    (they are reported apart). The lowest measurable frequency, 1 / evaluation samples, must lie
    above the first bin for this to be exact."""
    counts = np.asarray(counts, dtype=np.int64).copy()
    if not 0 <= never_fired <= counts[0]:
        raise ValueError(f"never_fired: expected 0..{counts[0]} (the first bin), got {never_fired}")
    counts[0] -= never_fired
    return counts, np.asarray(edges)


def _freq_plot(plt, out, rows):
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for r in rows:
        if r["problem"] == "light" and r["method"] in ("gba", "topk"):
            run = records.read_json(out / "runs" / f"{r['run']}.json")
            never = int(round(run["dead"] * run["width"]))
            counts, e = fired_histogram(run["freq_hist"], run["freq_edges"], never)
            ax.stairs(counts, e, label=f"{r['run']} ({never} of {run['width']} never fired, not shown)")
    ax.set_xlabel("log10 activation frequency on held-out samples")
    ax.set_ylabel("latents")
    ax.set_title("latent activation frequencies (light problem)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "frequencies.png", dpi=120)
    plt.close(fig)


SECTIONS = ("recovery", "hetero", "toy", "heat", "frontier")


def run(out_dir: Path, *, quick: bool = True, resume: bool = True, sections=None, **options) -> str:
    """Run (or resume) the chosen sections (default all) and write plots, results.json, summary.md."""
    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    cfg = settings(quick)
    if options.get("problems"):  # e.g. only "light": our target problem
        cfg["problems"] = {k: v for k, v in cfg["problems"].items() if k in options["problems"]}
    if options.get("toy_topk"):  # e.g. (20,) first, the other k later (each run is cached)
        cfg["toy"] = dict(cfg["toy"], topk=tuple(options["toy_topk"]))
    if options.get("toy_seeds") is not None:  # indices into TOY_SEEDS
        cfg["toy"] = dict(cfg["toy"], seeds=tuple(options["toy_seeds"]))
    if options.get("toy_d"):  # another dimension (runs toy_d<d>_*): the paper's is 42
        cfg["toy"] = dict(cfg["toy"], d=int(options["toy_d"]))
    sections = tuple(SECTIONS if not sections else sections)
    t0 = time.perf_counter()
    if not quick and "recovery" in sections and "light" in cfg["problems"]:  # the target problem first
        recovery_tables(out, dict(cfg, problems={"light": cfg["problems"]["light"]}, methods={"light": "target"}),
                        resume)
        if "hetero" in sections:
            heterogeneous(out, cfg, resume)
    rows = recovery_tables(out, cfg, resume) if "recovery" in sections else []
    hetero, hmeta = heterogeneous(out, cfg, resume) if "hetero" in sections else ([], None)
    toy = imbalanced_toy(out, cfg, resume) if "toy" in sections else []
    heat = resonance(out, cfg, resume) if "heat" in sections else None
    front = frontier(out, cfg, resume) if "frontier" in sections else []
    _plots(out, heat, front, rows)
    text = report.summary(cfg, rows, toy, hetero, hmeta, heat, quick, front)
    toy_cfg: dict[str, Any] = cfg["toy"]
    records.write_json(out / "results.json", dict(
        quick=quick, sections=sections, settings=cfg,
        seeds=dict(data=[0, 2, 3], init=1, toy=[TOY_SEEDS[j] for j in toy_cfg["seeds"]]),
        environment=records.environment(), recovery=rows, imbalanced_toy=toy, heterogeneous=hetero,
        heterogeneous_meta=hmeta, resonance=heat, frontier=front, wall_s=time.perf_counter() - t0))
    (out / "summary.md").write_text(text)
    return text


def _both(key: str) -> str:
    """'default: <quick value>, <full value> with --full' of a toy setting, for a help text."""
    def show(v):
        return " ".join(str(x) for x in v) if isinstance(v, tuple) else str(v)
    quick, full = show(settings(True)["toy"][key]), show(settings(False)["toy"][key])
    sep = "; " if " " in quick + full else ", "  # keep lists apart
    return f"default: {quick}" if quick == full else f"default: {quick}{sep}{full} with --full"


def _size(cfg: dict) -> str:
    light = cfg["problems"]["light"]
    return (f"{cfg['steps']} steps x batch {cfg['batch']} per run, light problem n={light['n']}, d={light['d']}, "
            f"s={light['s']}, M={light['width']}")


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    quick, full = settings(True), settings(False)
    ap = argparse.ArgumentParser(prog="python -m experiments.sae.run", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--full", action="store_true",
                    help=f"paper size (our target problem): {_size(full)} (default: quick, {_size(quick)})")
    ap.add_argument("--out", default="results",
                    help="output root; writes OUT/sae/ (summary.md, results.json, plots; each run cached in runs/)")
    ap.add_argument("--no-resume", action="store_true",
                    help="retrain every run (default: reuse a cached run whose problem, settings and code match)")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=None,
                    help=f"sections to run (default: all, {' '.join(SECTIONS)})")
    ap.add_argument("--problems", nargs="+", choices=("light", "heavy"), default=None,
                    help="superposition problems of the recovery tables: light (d > sqrt n), heavy (d < sqrt n); "
                         "the frontier needs light (default: both)")
    ap.add_argument("--cached-only", action="store_true",
                    help="summarise the finished runs, train nothing (default: train the missing runs)")
    ap.add_argument("--toy-topk", type=int, nargs="+", default=None, metavar="K",
                    help=f"TopK k values of the imbalanced toy ({_both('topk')})")
    ap.add_argument("--toy-seeds", type=int, nargs="+", default=None, metavar="J",
                    help=f"toy seed pairs, indices into {TOY_SEEDS} of (data seed, init seed) ({_both('seeds')})")
    ap.add_argument("--toy-d", type=int, default=None, metavar="D",
                    help=f"toy dimension; another than the paper's 42 writes runs toy_d<D>_* ({_both('d')})")
    return ap


def main(argv: list[str] | None = None) -> None:
    global _CACHED_ONLY
    a = build_parser().parse_args(argv)
    _CACHED_ONLY = a.cached_only
    target = Path(a.out) / "sae"
    target.mkdir(parents=True, exist_ok=True)
    print(run(target, quick=not a.full, resume=not a.no_resume, sections=a.sections,
              problems=a.problems, toy_topk=a.toy_topk, toy_seeds=a.toy_seeds, toy_d=a.toy_d))


if __name__ == "__main__":
    main()
