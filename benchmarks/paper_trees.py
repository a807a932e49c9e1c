"""The paper's six datasets as generated trees in their published layouts, at a share of their
published image counts and at their real image sizes (synthetic pixels: nothing is downloaded).

    python benchmarks/paper_trees.py DIR --fraction 0.1 [--only food11 cifar10 ...]

Used by the data memory benchmark (benchmarks/data_memory.py). Each dataset is written once under
DIR/<fraction>/ and reused (a ``.complete`` file marks a finished tree).
"""

from __future__ import annotations

import argparse
import io
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from cgmagan.data.published import ANIMALS10, CHINESE_MNIST, CIFAR10, EMNIST_BALANCED, FOOD11, MNIST

# the sizes their photographs come in (width, height): Food-11 mostly 512 on the long side,
# Animals-10 web thumbnails around 300x225 with some larger ones
FOOD11_SIZES = [(512, 384), (384, 512), (512, 512), (512, 341)]
ANIMALS10_SIZES = [(300, 225), (300, 200), (225, 300), (640, 426)]
POOL = 24  # distinct encoded images per size; files repeat them (decoding cost is the same)


def _jpegs(sizes: list[tuple[int, int]], mode: str, seed: int) -> list[bytes]:
    """Encoded JPEGs of smooth random scenes (gradients and blobs, as photographs compress)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(POOL):
        w, h = sizes[i % len(sizes)]
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        channels = [np.sin(rng.uniform(2, 9) * x + rng.uniform(0, 6)) + np.cos(rng.uniform(2, 9) * y) for _ in range(3)]
        arr = ((np.stack(channels, -1) + 2) * 63).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).convert(mode).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _count(n: int, fraction: float) -> int:
    return max(1, round(n * fraction))


def _idx(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = np.array([0x0800 | arr.ndim, *arr.shape], dtype=">i4")
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(arr.astype(np.uint8).tobytes())


def mnist_like(folder: Path, prefixes: tuple[str, str], counts: tuple[int, int], classes: int, fraction: float) -> None:
    rng = np.random.default_rng(4)
    for prefix, n in zip(prefixes, counts, strict=True):
        n = _count(n, fraction)
        _idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % classes)


def write_mnist(root: Path, fraction: float) -> None:
    mnist_like(root / "MNIST" / "raw", ("train", "t10k"), MNIST, 10, fraction)


def write_emnist(root: Path, fraction: float) -> None:
    mnist_like(root / "EMNIST" / "raw", ("emnist-balanced-train", "emnist-balanced-test"), EMNIST_BALANCED, 47, fraction)


def write_cifar10(root: Path, fraction: float) -> None:
    rng = np.random.default_rng(5)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    per_batch = _count(CIFAR10[0] // 5, fraction)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = per_batch if name != "test_batch" else _count(CIFAR10[1], fraction)
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


def write_food11(root: Path, fraction: float) -> None:
    pool = _jpegs(FOOD11_SIZES, "RGB", 11)
    for split, n in FOOD11.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(_count(n, fraction)):
            (root / split / f"{i % 11}_{i // 11}.jpg").write_bytes(pool[i % POOL])


def write_animals10(root: Path, fraction: float) -> None:
    pool = _jpegs(ANIMALS10_SIZES, "RGB", 10)
    for italian, n in ANIMALS10.items():
        folder = root / "raw-img" / italian
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(_count(n, fraction)):
            (folder / f"OIP-{i}.jpeg").write_bytes(pool[i % POOL])


def write_chinese_mnist(root: Path, fraction: float) -> None:
    pool = _jpegs([(64, 64)], "L", 15)
    suites, samples, codes = CHINESE_MNIST
    values = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 1000, 10000, 100000000]
    chars = "零一二三四五六七八九十百千万亿"
    folder = root / "data" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["suite_id,sample_id,code,value,character"]
    for suite in range(1, _count(suites, fraction) + 1):
        for sample in range(1, samples + 1):
            for code in range(1, codes + 1):
                rows.append(f"{suite},{sample},{code},{values[code - 1]},{chars[code - 1]}")
                (folder / f"input_{suite}_{sample}_{code}.jpg").write_bytes(pool[(suite + sample + code) % POOL])
    (root / "chinese_mnist.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


# dataset name (conf/dataset) -> (writer, the folder under the data dir that its config points at)
WRITERS = {"mnist": (write_mnist, ""), "emnist": (write_emnist, ""), "cifar10": (write_cifar10, ""),
           "food11": (write_food11, "food11"), "animals10": (write_animals10, "animals10"),
           "chinese_mnist": (write_chinese_mnist, "chinese_mnist")}  # fmt: skip


def published_images(name: str) -> int:
    return {"mnist": sum(MNIST), "emnist": sum(EMNIST_BALANCED), "cifar10": sum(CIFAR10), "food11": sum(FOOD11.values()),
            "animals10": sum(ANIMALS10.values()), "chinese_mnist": int(np.prod(CHINESE_MNIST))}[name]  # fmt: skip


def tree(data_dir: Path, name: str, fraction: float) -> Path:
    """``data_dir`` holding dataset ``name`` at ``fraction`` of its published size (written once);
    point ``paths.data_dir`` at it."""
    writer, sub = WRITERS[name]
    done = data_dir / f".{name}.complete"
    if not done.is_file():
        writer(data_dir / sub if sub else data_dir, fraction)
        done.touch()
    return data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--only", nargs="*", default=list(WRITERS))
    args = parser.parse_args()
    for name in args.only:
        print(name, tree(args.dir / str(args.fraction), name, args.fraction))


if __name__ == "__main__":
    main()
