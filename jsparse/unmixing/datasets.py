"""Loaders for the Samson, Jasper Ridge and Urban scenes in F. Zhu's original .mat layouts.

Layout (see the dataset README): images are bands x pixels and abundances endmembers x pixels,
pixels in MATLAB column-major order (pixel p = row + col * nRow; map k is
`A[k].reshape(nRow, nCol, order="F")`). Scale factors applied here:
  * Samson: `V` is already in [0, 1]; used as is.
  * Jasper Ridge: `Y` (uint16) / `maxValue` (5000).
  * Urban: `Y` / `maxValue` when the file has one, else / 1000 (common loaders' convention).
Files are looked for in `root` when given, else in $JSPARSE_HSI_ROOT, the user folder
(`$XDG_CACHE_HOME/jsparse/hyperspectral`) and the bundled Samson/Jasper files, each as
`<folder>/<name>/<file>` then `<folder>/<file>` (see `jsparse.unmixing.fetch`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jsparse.unmixing import fetch

__all__ = ["HSIDataset", "load_dataset", "DATASETS", "default_root", "to_maps"]

ENV_VAR = "JSPARSE_HSI_ROOT"

# name -> (subfolder, image file, ground-truth file per number of endmembers, default R)
DATASETS = {
    "samson": ("samson", "samson_1.mat", {3: "end3.mat"}, 3),
    "jasper": ("jasper", "jasperRidge2_R198.mat", {4: "end4.mat"}, 4),
    "urban": ("urban", "Urban_R162.mat", {4: "end4_groundTruth.mat", 5: "end5_groundTruth.mat",
                                         6: "end6_groundTruth.mat"}, 4),
}


class HSIDataset(NamedTuple):
    """A scene with its ground truth (NumPy float64).

    Attributes:
      Y: (L, N) reflectances (scaled as documented above).
      endmembers: (L, R) ground-truth spectra (Samson's are peak-normalised; compare with SAD).
      abundances: (R, N) ground-truth abundances (non-negative, columns sum to one).
      shape: (nRow, nCol) with N = nRow * nCol (column-major pixel order).
      names: R endmember names in column order.
      name: dataset name.
    """

    Y: np.ndarray
    endmembers: np.ndarray
    abundances: np.ndarray
    shape: tuple
    names: tuple
    name: str


def default_root() -> Path | None:
    """The folder named by $JSPARSE_HSI_ROOT, or None."""
    v = os.environ.get(ENV_VAR)
    return Path(v) if v else None


def _find(root, sub: str, fname: str) -> Path:
    return fetch.find_file(sub, fname, root)


def _scalar(d, key, default=None):
    if key not in d:
        return default
    return float(np.asarray(d[key]).ravel()[0])


def _size(d, key, fname) -> int:
    value = _scalar(d, key)
    if value is None:
        raise ValueError(f"{fname}: has no {key!r} entry (the image's number of rows / columns)")
    return int(value)


def _names(g, R):
    if "cood" not in g:
        return tuple(f"endmember {k + 1}" for k in range(R))
    return tuple(str(np.asarray(c).ravel()[0]) for c in np.asarray(g["cood"]).ravel())


def to_maps(abundances: np.ndarray, shape) -> np.ndarray:
    """(R, N) abundances -> (R, nRow, nCol) maps in column-major pixel order."""
    a = np.asarray(abundances)
    return np.stack([a[k].reshape(tuple(shape), order="F") for k in range(a.shape[0])])


def load_dataset(name: str, root=None, *, num_endmembers: int | None = None) -> HSIDataset:
    """Load a scene and its ground truth.

    Args:
      name: "samson", "jasper" or "urban".
      root: folder with the dataset subfolders, searched alone; default: $JSPARSE_HSI_ROOT, the user
        folder, then the bundled Samson/Jasper (`unmixing.download_dataset` fetches the others).
      num_endmembers: which ground truth (Urban: 4, 5 or 6; default the dataset's usual R).

    Raises:
      ValueError: unknown name / number of endmembers, or inconsistent shapes in the files.
      FileNotFoundError: a file is missing (the message names the file and the folders searched).
      CorruptFileError: a bundled file fails its SHA-256 check.
    """
    if name not in DATASETS:
        raise ValueError(f"name: expected one of {tuple(DATASETS)}, got {name!r}")
    sub, image_file, gt_files, R0 = DATASETS[name]
    R = R0 if num_endmembers is None else num_endmembers
    if R not in gt_files:
        raise ValueError(f"num_endmembers: {name} has ground truths for {tuple(gt_files)}, got {R!r}")
    from scipy.io import loadmat

    gt = loadmat(_find(root, sub, gt_files[R]))
    img = loadmat(_find(root, sub, image_file))
    if name == "samson":
        Y = np.asarray(img["V"], np.float64)
    else:
        Y = np.asarray(img["Y"], np.float64)
        scale = _scalar(img, "maxValue", 5000.0 if name == "jasper" else 1000.0)
        Y = Y / scale
    shape = (_size(img, "nRow", image_file), _size(img, "nCol", image_file))
    M = np.asarray(gt["M"], np.float64)
    A = np.asarray(gt["A"], np.float64)
    L, N = Y.shape
    if shape[0] * shape[1] != N:
        raise ValueError(f"{image_file}: nRow*nCol = {shape[0] * shape[1]} differs from the {N} pixels of the image")
    if M.shape != (L, R):
        raise ValueError(f"{gt_files[R]}: M has shape {M.shape}, expected ({L}, {R})")
    if A.shape != (R, N):
        raise ValueError(f"{gt_files[R]}: A has shape {A.shape}, expected ({R}, {N})")
    return HSIDataset(Y, M, A, shape, _names(gt, R), name)
