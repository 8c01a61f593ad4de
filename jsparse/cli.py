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
from typing import Callable


def report_errors(fn: Callable[..., int | None], *args) -> int:
    """`fn(*args)`'s exit status; bad input or a damaged file (ValueError, which includes
    jsparse.CorruptFileError), a missing file or a missing optional package print
    `jsparse: error: <message>` to stderr instead of a traceback and give 2."""
    try:
        return fn(*args) or 0
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"jsparse: error: {err}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "experiments":
        try:
            from experiments.__main__ import main as run_experiments
        except ImportError:
            print("jsparse experiments: run from a source checkout (the experiments/ folder is not installed)",
                  file=sys.stderr)
            return 2
        return run_experiments(argv[1:])
    if argv and argv[0] == "sae":
        from jsparse.sae import cli as sae_cli

        commands = {"harvest": sae_cli.harvest_main, "train": sae_cli.train_main}
        if len(argv) < 2 or argv[1] not in commands:
            print("usage: jsparse sae {harvest,train} [options]  (add --help for the options)", file=sys.stderr)
            return 2
        return report_errors(commands[argv[1]], argv[2:])
    parser = argparse.ArgumentParser(prog="jsparse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print versions, backend and devices as JSON")
    sub.add_parser("experiments", help="run reproductions (see python -m experiments --help)")
    sub.add_parser("sae", help="SAEs on transformer activations: 'jsparse sae harvest|train --help'")
    args = parser.parse_args(argv)
    if args.command == "info":
        from jsparse.core.records import environment

        return report_errors(lambda: print(json.dumps(environment(), indent=2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
