"""Image classification data for the pruning experiments, as NHWC float32 NumPy arrays.

* `digits()` — scikit-learn's bundled 8x8 handwritten digits (no download): 1797 images, 10
  classes, a fixed stratified 80/20 split, standardised with the training mean/std.
* `fashion_mnist(dir)` — the four IDX `.gz` files; `cifar10(dir)` / `cifar100(dir)` — the python
  pickle batches; `tiny_imagenet(dir)` — the official folder layout (the `val` split is the test
  set).  Nothing is downloaded; an incomplete directory raises FileNotFoundError naming the
  expected files.  Normalisation constants are the reference code's.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import NamedTuple, cast

import numpy as np

__all__ = ["Dataset", "digits", "fashion_mnist", "cifar10", "cifar100", "tiny_imagenet", "load", "read_idx"]


class Dataset(NamedTuple):
    x_train: np.ndarray  # (N, H, W, C) float32
    y_train: np.ndarray  # (N,) int32
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str
    augment: bool  # flip + crop during training (CIFAR, TinyImageNet)


def _require(root: Path, names: list[str], what: str) -> None:
    missing = [n for n in names if not (root / n).exists()]
    if missing:
        raise FileNotFoundError(f"data_dir: {what} expects {names} in {root}; missing {missing}")


def _normalise(x: np.ndarray, mean, std) -> np.ndarray:
    return ((x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)


def digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.utils import Bunch

    data = cast(Bunch, load_digits())  # a Bunch unless return_X_y=True (sklearn has no overloads)
    x = (data.images / 16.0).astype(np.float32)[..., None]
    y = data.target.astype(np.int32)
    split = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    xtr, xte, ytr, yte = (np.asarray(a) for a in split)
    mean, std = xtr.mean(), xtr.std()
    return Dataset(_normalise(xtr, mean, std), ytr, _normalise(xte, mean, std), yte, 10, "digits", False)


def read_idx(path: str | Path) -> np.ndarray:
    """Read a (gzipped) IDX file: big-endian magic (0, 0, type 0x08 = uint8, ndim) then dims."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4]!r})")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(data_dir: str | Path) -> Dataset:
    root = Path(data_dir)
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz"]
    _require(root, names, "Fashion-MNIST")
    xtr, ytr, xte, yte = (read_idx(root / n) for n in names)
    prep = lambda x: _normalise(x.astype(np.float32)[..., None] / 255.0, 0.2860, 0.3530)
    return Dataset(prep(xtr), ytr.astype(np.int32), prep(xte), yte.astype(np.int32), 10, "fashionmnist", False)


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def _cifar_images(batch: dict) -> np.ndarray:
    return batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0


def _root(data_dir, sub: str) -> Path:
    root = Path(data_dir)
    return root / sub if (root / sub).is_dir() else root


def cifar10(data_dir: str | Path) -> Dataset:
    root = _root(data_dir, "cifar-10-batches-py")
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    _require(root, names, "CIFAR-10")
    train = [_unpickle(root / n) for n in names[:5]]
    test = _unpickle(root / "test_batch")
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    xtr = _normalise(np.concatenate([_cifar_images(b) for b in train]), mean, std)
    ytr = np.concatenate([np.asarray(b[b"labels"]) for b in train]).astype(np.int32)
    xte = _normalise(_cifar_images(test), mean, std)
    return Dataset(xtr, ytr, xte, np.asarray(test[b"labels"], np.int32), 10, "cifar10", True)


def cifar100(data_dir: str | Path) -> Dataset:
    root = _root(data_dir, "cifar-100-python")
    _require(root, ["train", "test"], "CIFAR-100")
    train, test = _unpickle(root / "train"), _unpickle(root / "test")
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    return Dataset(_normalise(_cifar_images(train), mean, std), np.asarray(train[b"fine_labels"], np.int32),
                   _normalise(_cifar_images(test), mean, std), np.asarray(test[b"fine_labels"], np.int32),
                   100, "cifar100", True)


def tiny_imagenet(data_dir: str | Path) -> Dataset:
    """wnids.txt; train/<wnid>/images/*.JPEG; val/val_annotations.txt (file, wnid, ...) + val/images/."""
    from PIL import Image

    root = _root(data_dir, "tiny-imagenet-200")
    _require(root, ["wnids.txt", "train", "val/val_annotations.txt", "val/images"], "TinyImageNet")
    wnids = [w.strip() for w in (root / "wnids.txt").read_text().split() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    load_img = lambda p: np.asarray(Image.open(p).convert("RGB"), np.float32) / 255.0
    xtr, ytr = [], []
    for w in wnids:
        files = sorted((root / "train" / w / "images").glob("*.JPEG"))
        if not files:
            raise FileNotFoundError(f"data_dir: TinyImageNet expects train/{w}/images/*.JPEG in {root}")
        xtr += [load_img(p) for p in files]
        ytr += [index[w]] * len(files)
    xte, yte = [], []
    for line in (root / "val" / "val_annotations.txt").read_text().splitlines():
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) >= 2:
            xte.append(load_img(root / "val" / "images" / parts[0]))
            yte.append(index[parts[1]])
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    return Dataset(_normalise(np.stack(xtr), mean, std), np.asarray(ytr, np.int32),
                   _normalise(np.stack(xte), mean, std), np.asarray(yte, np.int32), len(wnids), "tinyimagenet", True)


LOADERS = {"fashionmnist": fashion_mnist, "cifar10": cifar10, "cifar100": cifar100, "tinyimagenet": tiny_imagenet}


def load(name: str, data_dir: str | Path | None = None) -> Dataset:
    """`digits` (bundled) or one of LOADERS' names with a user-given `data_dir`."""
    if name == "digits":
        return digits()
    if name not in LOADERS:
        raise ValueError(f"name: expected 'digits' or one of {tuple(LOADERS)}, got {name!r}")
    if data_dir is None:
        raise ValueError(f"data_dir: dataset {name!r} must be supplied locally (no downloads); pass its folder")
    return LOADERS[name](data_dir)
