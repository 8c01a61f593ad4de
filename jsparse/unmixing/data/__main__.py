"""Download hyperspectral scenes with SHA-256 checks: `python -m jsparse.unmixing.data samson jasper urban`.

Files go to `--root`, else `$JSPARSE_HSI_ROOT`, else `$XDG_CACHE_HOME/jsparse/hyperspectral`
(default `~/.cache/jsparse/hyperspectral`), where `jsparse.unmixing.datasets.load_dataset` finds them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from jsparse.unmixing.fetch import SOURCES, download_dataset


def build_parser() -> argparse.ArgumentParser:
    from jsparse.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m jsparse.unmixing.data", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("names", nargs="+", choices=tuple(SOURCES), help="scenes to download")
    p.add_argument("--root", type=Path, default=None,
                   help="folder to write <name>/<file> into (default: $JSPARSE_HSI_ROOT, else "
                        "$XDG_CACHE_HOME/jsparse/hyperspectral, i.e. ~/.cache/jsparse/hyperspectral)")
    return p


def main(argv: list[str] | None = None) -> list[Path]:
    a = build_parser().parse_args(argv)
    folders = []
    for name in a.names:
        folders.append(download_dataset(name, a.root))
        print(f"{name}: {folders[-1] / name}")
    return folders


if __name__ == "__main__":
    main()
