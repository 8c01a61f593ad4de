"""GBA default ablations: why GBA's default range fails in heavy superposition, and whether the
notes' output scale (a = 1) and bias period (50 steps) work at our training budget.

Problems (PROBLEMS): heavy (n = 512, d = 16 < sqrt 512, s = 3, M = 1024), light (the project's
n = 512, d = 128, s = 8) and small (n = 64, d = 32, s = 3, M = 256: the quick problem and the
unit test's). Every variant (VARIANTS) is a GBA/BA run with a few settings changed from the
defaults; each run is cached in out/<problem>_<variant>.json (resumable) and summarised in
out/summary.md. Per run: FRR, L0, FVU, dead, and per group k the target p_k, the measured
firing frequency, the fraction of biases at the -1 clamp, the mean output scale a, the mean
max-cosine of the group's latents to the features and how many features have their best match
(cos >= 0.9) in that group.

    nice -n 10 python -m experiments.sae.ablate --problem heavy --steps 2000 --out results/sae_ablate
    nice -n 10 python -m experiments.sae.ablate --problem small --steps 1500 --batch 256 --out results/sae_ablate
    nice -n 10 python -m experiments.sae.ablate --problem light --steps 3907 --only htf0.1 --out results/sae_ablate
"""
from __future__ import annotations

from experiments import _env  # noqa: F401  (XLA flags before jax)

# isort: split

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from jsparse import sae
from jsparse.core import records
from jsparse.sae import metrics

PROBLEMS = {"heavy": dict(n=512, d=16, s=3, width=1024), "light": dict(n=512, d=128, s=8, width=1024),
            "small": dict(n=64, d=32, s=3, width=256)}  # small: the quick light problem and the unit test's

# name -> train() overrides (method gba unless given)
VARIANTS = {
    "default": {},
    "htf0.1": dict(htf=0.1),  # v1 range 0.1 -> 1e-3
    "htf0.05": dict(htf=0.05),
    "a1": dict(scale_init=1.0),  # the notes' a = 1
    "a1_every50": dict(scale_init=1.0, update_every=50),  # both of the notes' values
    "every50": dict(update_every=50),  # the notes' period
    "htf0.1_a1_every50": dict(htf=0.1, scale_init=1.0, update_every=50),
    "band": dict(htf=0.077, ltf=0.006),  # all targets inside f <~ p <~ min(sqrt f, f d)
    "htf0.05_ltf0.005": dict(htf=0.05, ltf=0.005),
    "narrow_0.02_0.01": dict(htf=0.02, ltf=0.01),  # 10 groups over a factor 2: nearly BA
    "lr1e-3": dict(lr=1e-3),
    "afrozen": dict(scale_warmup=10**9),  # a stays 0.01: fully decoupled
    "awarm_half": dict(scale_warmup="half"),
    "band_afrozen": dict(htf=0.077, ltf=0.006, scale_warmup=10**9),
    "ba_0.022": dict(method="ba"),
    "ba_0.01": dict(method="ba", target=0.01),
}


def _group_table(model, freqs, features, groups, targets):
    dec = model.decoder_weight()
    cos = np.asarray(metrics.cosine_matrix(dec, features))  # (M, n)
    best = np.argmax(cos, axis=0)
    ok = cos[best, np.arange(cos.shape[1])] >= 0.9
    bias = np.asarray(model.bias[...])
    scale = np.asarray(model.scale[...]) if model.scale is not None else np.ones_like(bias)
    rows = []
    for k in range(int(groups.max()) + 1):
        g = groups == k
        rows.append(dict(group=k, target=float(targets[g][0]), freq=float(np.mean(freqs[g])),
                         at_clamp=float(np.mean(bias[g] <= -1 + 1e-6)), bias=float(np.mean(bias[g])),
                         scale=float(np.mean(np.abs(scale[g]))), recovered=int(np.sum(ok & g[best])),
                         latent_maxcos=float(np.mean(np.max(cos[g], axis=1)))))
    return rows


def run_variant(out: Path, name: str, over: dict, *, steps: int, batch: int, problem: str = "heavy",
                resume: bool = True) -> dict:
    path = out / f"{problem}_{name}.json"
    if resume and path.exists():
        return records.read_json(path)
    p = PROBLEMS[problem]
    st = sae.make_stream(jax.random.PRNGKey(0), n=p["n"], d=p["d"], s=p["s"], batch_size=batch)
    kw = dict(over)
    if kw.get("scale_warmup") == "half":
        kw["scale_warmup"] = steps // 2
    method = kw.pop("method", "gba")
    t0 = time.perf_counter()
    model, _ = sae.train(st, method=method, width=p["width"], steps=steps, key=jax.random.PRNGKey(1),
                         log_every=max(steps // 20, 1), show_progress=False, **kw)
    wall = time.perf_counter() - t0
    ev = metrics.evaluate(model, [st.batch(10**7 + j) for j in range(50)])
    rec = metrics.recovery_rate(model.decoder_weight(), st.features, (0.8, 0.9))
    cfg = _config(method, kw, p["width"])
    res = dict(name=name, problem=problem, **p, method=method, settings=kw, steps=steps, batch=batch, wall_s=wall,
               frr08=rec[0.8], frr09=rec[0.9], l0=ev["l0"], fvu=ev["fvu"], dead=ev["dead_fraction"],
               groups=_group_table(model, np.asarray(ev["frequencies"]), st.features,
                                   np.asarray(cfg.groups), np.asarray(cfg.targets)))
    records.write_json(path, res)
    return res


def _config(method, kw, width):
    """The variant's GBA/BA config (targets and group ids) from its method value."""
    fields = {f.name for f in dataclasses.fields(sae.methods.METHOD_TYPES[method])}
    value = sae.as_method(method, **{k: v for k, v in kw.items() if k in fields})
    assert isinstance(value, sae.methods.AdaptiveMethod), "the variants are GBA/BA runs"
    return value.config(width)


def summarize(out: Path) -> str:
    """Markdown table of every cached variant (one row each), written to out/summary.md."""
    lines = ["| problem | variant | settings | steps x batch | FRR@0.8 | FRR@0.9 | L0 | FVU | dead % | "
             "recovered (cos >= 0.9) per group, highest target first | mean output scale a per group |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in sorted(out.glob("*.json")):
        r = records.read_json(f)
        r = {**PROBLEMS[f.stem.split("_")[0]], "problem": f.stem.split("_")[0], **r}  # early runs lack them
        rec = " ".join(str(g["recovered"]) for g in r["groups"])
        a = " ".join(f"{g['scale']:.2f}" for g in r["groups"])
        st = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
        lines.append(f"| {r['problem']} (n={r['n']}, d={r['d']}, s={r['s']}, M={r['width']}) | {r['name']} | "
                     f"{r['method']}: {st} | {r['steps']} x {r['batch']} | {100 * r['frr08']:.1f} | "
                     f"{100 * r['frr09']:.1f} | {r['l0']:.1f} | {r['fvu']:.3f} | {100 * r['dead']:.1f} | {rec} | {a} |")
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    return text


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m experiments.sae.ablate", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--out", default="results/sae_ablate",
                    help="folder of the cached runs (<problem>_<variant>.json, reused when present) and summary.md")
    ap.add_argument("--steps", type=int, default=2000, help="training steps per run")
    ap.add_argument("--batch", type=int, default=512, help="samples per training step")
    ap.add_argument("--only", nargs="*", default=None, metavar="VARIANT",
                    help=f"variants to run, of: {', '.join(VARIANTS)} "
                         "(default: all of them; none after the flag: all too)")
    ap.add_argument("--summary", action="store_true",
                    help="only write summary.md from the cached runs (default: run the variants, then summarise)")
    problems = "; ".join(f"{k}: n={p['n']}, d={p['d']}, s={p['s']}, M={p['width']}" for k, p in PROBLEMS.items())
    ap.add_argument("--problem", choices=sorted(PROBLEMS), default="heavy", help=f"problem to run ({problems})")
    return ap


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.summary:
        print(summarize(out))
        return
    for name, over in VARIANTS.items():
        if a.only and name not in a.only:
            continue
        r = run_variant(out, name, over, steps=a.steps, batch=a.batch, problem=a.problem)
        g = " ".join(f"{x['target']:.3g}:{x['freq']:.3g}/{x['recovered']}/c{x['at_clamp']:.2f}/a{x['scale']:.2f}"
                     for x in r["groups"])
        print(f"{name:22s} FRR@.9 {100 * r['frr09']:5.1f} @.8 {100 * r['frr08']:5.1f} L0 {r['l0']:5.1f} "
              f"FVU {r['fvu']:.3f} dead {100 * r['dead']:.1f} ({r['wall_s']:.0f}s)\n    {g}", flush=True)
    summarize(out)


if __name__ == "__main__":
    main()
