"""Loaders on tiny files written here in each format; the digits default; missing-file errors."""
import gzip
import pickle
import struct

import numpy as np
import pytest

from jsparse.pruning import datasets

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1


def _idx(path, arr):
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_idx(tmp_path):
    rng = np.random.default_rng(0)
    xtr, xte = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 256, (3, 28, 28))
    _idx(tmp_path / "train-images-idx3-ubyte.gz", xtr)
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(5))
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", xte)
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        datasets.fashion_mnist(tmp_path)
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([2, 1, 0]))
    d = datasets.load("fashionmnist", tmp_path)
    assert d.x_train.shape == (5, 28, 28, 1) and d.x_test.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(d.y_test, [2, 1, 0])
    np.testing.assert_allclose(d.x_train[1, 3, 4, 0], (xtr[1, 3, 4] / 255 - 0.2860) / 0.3530, rtol=1e-5)


def test_cifar_pickles(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    img = rng.integers(0, 256, (2, 3072)).astype(np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(root / name, "wb") as f:
            pickle.dump({b"data": img, b"labels": [3, 7]}, f)
    d = datasets.cifar10(tmp_path)
    assert d.x_train.shape == (10, 32, 32, 3) and d.augment
    # channel-major rows: pixel (0, 0) of channel 1 is column 1024
    np.testing.assert_allclose(d.x_test[0, 0, 0, 1], (img[0, 1024] / 255 - 0.4822) / 0.1994, rtol=1e-5)
    (root / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        datasets.cifar10(tmp_path)
    c100 = tmp_path / "c100"
    c100.mkdir()
    for name in ("train", "test"):
        with open(c100 / name, "wb") as f:
            pickle.dump({b"data": img, b"fine_labels": [99, 5], b"coarse_labels": [1, 2]}, f)
    d = datasets.cifar100(c100)
    assert d.num_classes == 100 and list(d.y_train) == [99, 5]


def test_tiny_imagenet_folders(tmp_path):
    from PIL import Image

    root = tmp_path
    wnids = ["n01", "n02"]
    (root / "wnids.txt").write_text("\n".join(wnids))
    for w in wnids:
        (root / "train" / w / "images").mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (10 * i, 20, 30)).save(root / "train" / w / "images" / f"{w}_{i}.JPEG")
    (root / "val" / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8), (0, 0, 0)).save(root / "val" / "images" / "val_0.JPEG")
    with pytest.raises(FileNotFoundError, match="val_annotations.txt"):
        datasets.tiny_imagenet(root)
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t0\t8\t8\n")
    d = datasets.tiny_imagenet(root)
    assert d.x_train.shape == (4, 8, 8, 3) and list(d.y_train) == [0, 0, 1, 1] and list(d.y_test) == [1]


def test_digits_default_and_bad_names():
    d = datasets.load("digits")
    assert d.x_train.shape[1:] == (8, 8, 1) and d.x_train.shape[0] + d.x_test.shape[0] == 1797
    assert abs(float(d.x_train.mean())) < 1e-4
    with pytest.raises(ValueError, match="data_dir"):
        datasets.load("cifar10")
    with pytest.raises(ValueError, match="name"):
        datasets.load("imagenet", "/tmp")
