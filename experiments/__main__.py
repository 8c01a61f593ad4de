"""Single entry point for the reproductions.

    python -m experiments all --quick --out results      # every reproduction at a quick size
    python -m experiments krosbl --full --out results    # one reproduction at the paper's size

Each reproduction lives in `experiments/<name>/run.py` and defines
`run(out_dir, *, quick=True, resume=True, **options) -> str` (Markdown summary). Results land in
`<out>/<name>/` (PNG plots, results.json, summary.md); `<out>/SUMMARY.md` gathers the summaries of
every experiment present in `<out>` (a run of one experiment updates only its own section).
Finished work is checkpointed, so re-running after a crash continues where it stopped
(`--no-resume` starts over).
"""
from __future__ import annotations

from experiments import _env  # noqa: F401  (sets XLA_FLAGS before jax is imported)

# isort: split

import argparse
import importlib
import json
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


def _demote_headings(markdown: str) -> str:
    """Every Markdown heading two levels down (outside code blocks), to nest under a `##` section."""
    out, in_code = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        out.append("##" + line if not in_code and line.startswith("#") else line)
    return "\n".join(out)


def gather_summary(out: Path, failed: dict[str, str] | None = None) -> str:
    """`<out>/SUMMARY.md`: one section per experiment whose `summary.md` is in `out` (in the order
    of EXPERIMENTS), with its size and run time, and the traceback tail of any that failed now."""
    failed = failed or {}
    sections = []
    for name in EXPERIMENTS:
        summary, info = out / name / "summary.md", out / name / "run.json"
        if name in failed:
            sections.append(f"## {name}\n\nFAILED:\n\n```\n{failed[name][-2000:]}\n```\n")
        elif summary.exists():
            facts = json.loads(info.read_text()) if info.exists() else {}
            note = ""
            if facts:
                note = f"_{'quick' if facts.get('quick') else 'full'} size, {facts.get('seconds', 0):.0f} s; "
                note += f"files in `{name}/`_\n\n"
            body = _demote_headings(summary.read_text().strip())
            sections.append(f"## {name} ({EXPERIMENTS[name]})\n\n{note}{body}\n")
    return "# jsparse reproductions\n\n" + "\n".join(sections)


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("names", nargs="*", help=f"'all' or any of: {', '.join(EXPERIMENTS)} (none: print this help)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="quick", action="store_true", default=True,
                      help="quick size, minutes per experiment on CPU (the default)")
    size.add_argument("--full", dest="quick", action="store_false",
                      help="the papers' sizes, hours on CPU (default: quick)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="results folder")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="ignore saved checkpoints and start over (default: resume)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="hyperspectral datasets folder for unmixing, searched alone "
                             "(default: $JSPARSE_HSI_ROOT, the user folder, then the bundled scenes)")
    parser.add_argument("--dataset", default=None,
                        help="dataset for pruning: digits, fashionmnist or cifar10 (default: digits)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding the pruning dataset files (default: none; digits needs none)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if not args.names:
        parser.error("name the experiments to run ('all' for every one)")

    present = available()
    names = present if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}")
    given = (("data_root", args.data_root), ("dataset", args.dataset), ("data_dir", args.data_dir))
    options = {k: v for k, v in given if v is not None}

    args.out.mkdir(parents=True, exist_ok=True)
    failed = {}
    for name in names:
        if name not in present:
            print(f"==> {name}: not available in this checkout", file=sys.stderr)
            continue
        print(f"==> {name}: {EXPERIMENTS[name]}", flush=True)
        out_dir = args.out / name
        out_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"experiments.{name}.run")
            module.run(out_dir, quick=args.quick, resume=args.resume, **options)
        except Exception:  # keep going: one broken reproduction must not hide the others
            failed[name] = traceback.format_exc()
            print(failed[name], file=sys.stderr, flush=True)
            continue
        seconds = time.perf_counter() - start
        print(f"    done in {seconds:.1f} s -> {out_dir}", flush=True)
        (out_dir / "run.json").write_text(json.dumps({"quick": args.quick, "seconds": round(seconds, 1)}) + "\n")

    (args.out / "SUMMARY.md").write_text(gather_summary(args.out, failed))
    print(f"Summary: {args.out / 'SUMMARY.md'}")
    if failed:
        print(f"FAILED: {list(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
