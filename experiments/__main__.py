"""Single entry point for the reproductions.

    python -m experiments all --quick --out results      # every reproduction at a quick size
    python -m experiments krosbl --full --out results    # one reproduction at the paper's size

Each reproduction lives in `experiments/<name>/run.py` and defines
`run(out_dir, *, quick=True, resume=True, **options) -> str` (Markdown summary). Results land in
`<out>/<name>/` (PNG plots, results.json, summary.md); `<out>/SUMMARY.md` gathers the summaries.
Finished work is checkpointed, so re-running after a crash continues where it stopped
(`--no-resume` starts over).
"""
from __future__ import annotations

from experiments import _env  # noqa: F401  (sets XLA_FLAGS before jax is imported)

# isort: split

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

# Order of `all`: the foundation demo, then the four papers.
EXPERIMENTS = {
    "lasso": "Foundation: FISTA/ISTA sparse recovery through the shared runner and Monte Carlo harness",
    "krosbl": "He & Joseph 2024: Kronecker-structured SBL (synthetic experiments)",
    "irs": "He & Joseph 2024: IRS-aided MIMO channel estimation",
    "unmixing": "Zhu et al. 2014: robust hyperspectral unmixing (RRLbS)",
    "pruning": "Diao et al. 2023: PQ Index and sparsity-informed adaptive pruning",
    "sae": "Chen et al. 2025: sparse autoencoders with group bias adaptation",
    "sae_lm": "SAEs on real transformer activations (needs the [lm] extra)",
}


def available() -> list[str]:
    here = Path(__file__).parent
    return [name for name in EXPERIMENTS if (here / name / "run.py").exists()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=["all"], help=f"'all' or any of: {', '.join(EXPERIMENTS)}")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="quick", action="store_true", default=True, help="quick size (default)")
    size.add_argument("--full", dest="quick", action="store_false", help="the papers' sizes (hours on CPU)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results)")
    parser.add_argument("--no-resume", dest="resume", action="store_false", help="ignore saved checkpoints")
    parser.add_argument("--data-root", type=Path, default=None, help="hyperspectral datasets folder (unmixing)")
    parser.add_argument("--dataset", default=None, help="dataset for pruning (digits, fashionmnist, cifar10)")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder holding the pruning dataset files")
    args = parser.parse_args(argv)

    present = available()
    names = present if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}")
    given = (("data_root", args.data_root), ("dataset", args.dataset), ("data_dir", args.data_dir))
    options = {k: v for k, v in given if v is not None}

    args.out.mkdir(parents=True, exist_ok=True)
    sections, failed = [], []
    for name in names:
        if name not in present:
            sections.append(f"## {name}\n\nNot available in this checkout.\n")
            continue
        print(f"==> {name}: {EXPERIMENTS[name]}", flush=True)
        out_dir = args.out / name
        out_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"experiments.{name}.run")
            summary = module.run(out_dir, quick=args.quick, resume=args.resume, **options)
        except Exception:  # keep going: one broken reproduction must not hide the others
            failed.append(name)
            trace = traceback.format_exc()
            print(trace, file=sys.stderr, flush=True)
            sections.append(f"## {name}\n\nFAILED:\n\n```\n{trace[-2000:]}\n```\n")
            continue
        seconds = time.perf_counter() - start
        print(f"    done in {seconds:.1f} s -> {out_dir}", flush=True)
        size_note = f"_{'quick' if args.quick else 'full'} size, {seconds:.0f} s; files in `{out_dir}`_"
        sections.append(f"## {name} ({EXPERIMENTS[name]})\n\n{size_note}\n\n{summary.strip()}\n")

    text = "# jsparse reproductions\n\n" + "\n".join(sections)
    (args.out / "SUMMARY.md").write_text(text)
    print(f"Summary: {args.out / 'SUMMARY.md'}")
    if failed:
        print(f"FAILED: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
