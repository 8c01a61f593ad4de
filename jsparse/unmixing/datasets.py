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

from jsparse.core import errors
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


def _read_mat(path: Path) -> dict:
    """The variables of a MATLAB file; any decoding failure is a CorruptFileError naming the path."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        with errors.reading(path, "MATLAB file"):
            return loadmat(path)
    except (MatReadError, NotImplementedError, AssertionError) as err:
        raise errors.CorruptFileError(path, f"unreadable MATLAB file ({type(err).__name__}: {err})") from err


def _matrix(d: dict, key: str, path: Path) -> np.ndarray:
    """Variable `key` as a finite 2-D float64 array, else CorruptFileError."""
    if key not in d:
        raise errors.CorruptFileError(path, f"has no variable {key!r} (found {sorted(k for k in d if k[0] != '_')})")
    with errors.reading(path, f"variable {key!r}"):
        a = np.asarray(d[key], np.float64)
    if a.ndim != 2 or a.size == 0 or not np.all(np.isfinite(a)):
        raise errors.CorruptFileError(path, f"variable {key!r} is not a finite non-empty 2-D array (shape {a.shape})")
    return a


def _scalar(d, key, path, default=None):
    if key not in d:
        return default
    with errors.reading(path, f"variable {key!r}"):
        value = float(np.asarray(d[key], np.float64).ravel()[0])
    if not np.isfinite(value) or value <= 0:
        raise errors.CorruptFileError(path, f"variable {key!r} must be a positive number, got {value}")
    return value


def _size(d, key, path) -> int:
    value = _scalar(d, key, path)
    if value is None:
        raise errors.CorruptFileError(path, f"has no {key!r} entry (the image's number of rows / columns)")
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
      ValueError: unknown name / number of endmembers.
      FileNotFoundError: a file is missing (the message names the file and the folders searched).
      CorruptFileError: a file cannot be decoded, lacks a variable, has inconsistent shapes or
        non-finite values, or (bundled files) fails its SHA-256 check; the message names the path.
    """
    if name not in DATASETS:
        raise ValueError(f"name: expected one of {tuple(DATASETS)}, got {name!r}")
    sub, image_file, gt_files, R0 = DATASETS[name]
    R = R0 if num_endmembers is None else num_endmembers
    if R not in gt_files:
        raise ValueError(f"num_endmembers: {name} has ground truths for {tuple(gt_files)}, got {R!r}")
    gt_path, img_path = _find(root, sub, gt_files[R]), _find(root, sub, image_file)
    gt, img = _read_mat(gt_path), _read_mat(img_path)
    if name == "samson":
        Y = _matrix(img, "V", img_path)
    else:
        Y = _matrix(img, "Y", img_path) / _scalar(img, "maxValue", img_path, 5000.0 if name == "jasper" else 1000.0)
    shape = (_size(img, "nRow", img_path), _size(img, "nCol", img_path))
    M, A = _matrix(gt, "M", gt_path), _matrix(gt, "A", gt_path)
    L, N = Y.shape
    if shape[0] * shape[1] != N:
        raise errors.CorruptFileError(img_path, f"nRow*nCol = {shape[0] * shape[1]} differs from the {N} pixels")
    if M.shape != (L, R):
        raise errors.CorruptFileError(gt_path, f"M has shape {M.shape}, expected ({L}, {R})")
    if A.shape != (R, N):
        raise errors.CorruptFileError(gt_path, f"A has shape {A.shape}, expected ({R}, {N})")
    with errors.reading(gt_path, "endmember names"):
        names = _names(gt, R)
    return HSIDataset(Y, M, A, shape, names, name)
