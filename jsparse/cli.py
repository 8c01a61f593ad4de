"""The `jsparse` command line.

    jsparse info                 # versions, backend and devices
    jsparse experiments ...      # same as `python -m experiments ...` (from a source checkout)
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "experiments":
        try:
            from experiments.__main__ import main as run_experiments
        except ImportError:
            print("jsparse experiments: run from a source checkout (the experiments/ folder is not installed)", file=sys.stderr)
            return 2
        return run_experiments(argv[1:])
    parser = argparse.ArgumentParser(prog="jsparse", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print versions, backend and devices as JSON")
    sub.add_parser("experiments", help="run reproductions (see python -m experiments --help)")
    args = parser.parse_args(argv)
    if args.command == "info":
        from jsparse.core.records import environment

        print(json.dumps(environment(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
