"""The `jsparse` command line.

    jsparse info                 # versions, backend and devices
    jsparse sae harvest ...      # harvest transformer activations into a store (needs [lm])
    jsparse sae train ...        # train an SAE on a store, export to the SAELens layout
    jsparse experiments ...      # same as `python -m experiments ...` (from a source checkout)

Bad input or a damaged file prints `jsparse: error: <message>` (no traceback) and exits with 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that keeps the description's layout and shows every option's default: " (default: X)"
    is appended to an option's help unless the help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default is argparse.SUPPRESS or action.required:
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text  # a required positional has no default
        return f"{text} (default: %(default)s)"


def report_errors(fn: Callable[..., int | None], *args) -> int:
    """`fn(*args)`'s exit status; bad input or a damaged file (ValueError, which includes
    jsparse.CorruptFileError), a missing file or a missing optional package print
    `jsparse: error: <message>` to stderr instead of a traceback and give 2."""
    try:
        return fn(*args) or 0
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"jsparse: error: {err}", file=sys.stderr)
        return 2


_SAE_HELP = """usage: jsparse sae {harvest,train} [options]

SAEs on transformer activations (needs the lm extra: pip install -e ".[lm]" in a checkout).

commands:
  harvest   activations of a BERT checkpoint on the standard-library corpus into a store (resumable)
  train     an SAE trained on a store, exported to the SAELens layout (resumable; --fresh starts over)

'jsparse sae harvest --help' and 'jsparse sae train --help' list every option with its default."""


def _experiments_main() -> Callable[[list[str]], int] | None:
    """`experiments.__main__.main`, importing the experiments/ folder of the source checkout the
    command runs in (it is not installed with the package), or None."""
    try:
        from experiments.__main__ import main as run_experiments
    except ImportError:
        if not (Path.cwd() / "experiments" / "__main__.py").is_file():
            return None
        sys.path.insert(0, str(Path.cwd()))
        from experiments.__main__ import main as run_experiments
    return run_experiments


def _sae(argv: list[str]) -> int:
    from jsparse.sae import cli as sae_cli

    commands = {"harvest": sae_cli.harvest_main, "train": sae_cli.train_main}
    if not argv or argv[0] in ("-h", "--help"):
        print(_SAE_HELP, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] not in commands:
        print(f"jsparse sae: unknown command {argv[0]!r}\n\n{_SAE_HELP}", file=sys.stderr)
        return 2
    return report_errors(commands[argv[0]], argv[1:])


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser (`experiments` and `sae` are dispatched before it parses; they are
    listed here for `jsparse --help`)."""
    parser = argparse.ArgumentParser(prog="jsparse", description=__doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{info,experiments,sae}",
                                help="'jsparse <command> --help' describes each command")
    sub.add_parser("info", help="print versions, backend and devices as JSON", formatter_class=HelpFormatter,
                   description="Print Python, platform, JAX, jaxlib, Flax, Optax and NumPy versions, the backend, "
                   "the devices and whether 64-bit mode is on, as JSON.")
    sub.add_parser("experiments", help="run reproductions (see python -m experiments --help)",
                   formatter_class=HelpFormatter)
    sub.add_parser("sae", help="SAEs on transformer activations: 'jsparse sae harvest|train --help'",
                   formatter_class=HelpFormatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "experiments":
        run_experiments = _experiments_main()
        if run_experiments is None:
            print("jsparse experiments: run it from the root of a source checkout (the experiments/ folder is "
                  "not part of the installed package); there 'python -m experiments --help' works too",
                  file=sys.stderr)
            return 2
        return run_experiments(argv[1:])
    if argv and argv[0] == "sae":
        return _sae(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "info":
        from jsparse.core.records import environment

        return report_errors(lambda: print(json.dumps(environment(), indent=2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
