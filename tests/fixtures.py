"""Tiny dataset trees in each published layout, written by the tests into tmp_path."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def _image(path: Path, rng, mode: str = "RGB", size: int = 20) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 256, (size, size + 3, 4), dtype=np.uint8)  # not square, on purpose
    img = Image.fromarray(arr, "RGBA")
    img = img if mode == "RGBA" else img.convert(mode)
    img.save(path, format="PNG" if mode in ("RGBA", "P") else "JPEG" if mode != "CMYK" else "JPEG")


def _corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")


def food11_flat(root: Path, per_class: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for split in ("training", "validation", "evaluation"):
        for label in range(11):
            for i in range(per_class):
                mode = ["RGB", "L", "CMYK"][(label + i) % 3]
                _image(root / split / f"{label}_{i}.jpg", rng, mode)
    _corrupt(root / "training" / "3_99.jpg")
    return root


def food11_by_class(root: Path, per_class: int = 2) -> Path:
    from cgmagan.data.kaggle import FOOD11_CLASSES

    rng = np.random.default_rng(1)
    for split in ("training", "validation", "evaluation"):
        for name in FOOD11_CLASSES:
            for i in range(per_class):
                _image(root / split / name / f"{i}.jpg", rng)
    return root


def animals10(root: Path, per_class: int = 10) -> Path:
    from cgmagan.data.kaggle import ANIMALS10

    rng = np.random.default_rng(2)
    for italian in ANIMALS10:
        for i in range(per_class):
            suffix, mode = [(".jpeg", "RGB"), (".png", "RGBA"), (".png", "P"), (".jpg", "L")][i % 4]
            _image(root / "raw-img" / italian / f"OIP-{i}{suffix}", rng, mode)
    _corrupt(root / "raw-img" / "gatto" / "broken.jpeg")
    return root


def chinese_mnist(root: Path, suites: int = 10) -> Path:
    rng = np.random.default_rng(3)
    values = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 1000, 10000, 100000000]
    chars = "零一二三四五六七八九十百千万亿"
    rows = ["suite_id,sample_id,code,value,character"]
    for suite in range(1, suites + 1):
        for code in range(1, 16):
            rows.append(f"{suite},1,{code},{values[code - 1]},{chars[code - 1]}")
            _image(root / "data" / "data" / f"input_{suite}_1_{code}.jpg", rng, "L", size=64)
    (root / "chinese_mnist.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def _idx(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = np.array([0x0800 | arr.ndim, *arr.shape], dtype=">i4")  # 0x08: unsigned bytes
    path.write_bytes(header.tobytes() + arr.astype(np.uint8).tobytes())


def mnist_like(folder: Path, prefix_train: str, prefix_test: str, classes: int, n: int = 60) -> None:
    rng = np.random.default_rng(4)
    for prefix, count in ((prefix_train, n), (prefix_test, n // 3)):
        _idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28)))
        _idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(count) % classes)


def mnist(root: Path) -> Path:
    mnist_like(root / "MNIST" / "raw", "train", "t10k", 10)
    return root


def emnist(root: Path, split: str = "balanced") -> Path:
    mnist_like(root / "EMNIST" / "raw", f"emnist-{split}-train", f"emnist-{split}-test", 47, n=141)
    return root


def cifar10(root: Path, per_batch: int = 20) -> Path:
    rng = np.random.default_rng(5)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return root
