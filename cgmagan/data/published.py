"""The paper's datasets as published: image counts per official split (what the generated trees of
the benchmarks reproduce, and what a sweep's cost estimate counts)."""

from __future__ import annotations

MNIST = (60_000, 10_000)  # train, test
EMNIST_BALANCED = (112_800, 18_800)  # 47 classes
CIFAR10 = (50_000, 10_000)
FOOD11 = {"training": 9_866, "validation": 3_430, "evaluation": 3_347}
ANIMALS10 = {"cane": 4_863, "cavallo": 2_623, "elefante": 1_446, "farfalla": 2_112, "gallina": 3_098, "gatto": 1_668,
             "mucca": 1_866, "pecora": 1_820, "ragno": 4_821, "scoiattolo": 1_862}  # fmt: skip
CHINESE_MNIST = (100, 10, 15)  # suites x samples x codes = 15,000 images of 64x64

# official (train, test) files: the dataset's val_fraction of train is held out for validation
_TRAIN_TEST = {"mnist": MNIST, "emnist": EMNIST_BALANCED, "cifar10": CIFAR10}
# no official split: the dataset's fractions share these out
_UNSPLIT = {"animals10": sum(ANIMALS10.values()), "chinese_mnist": CHINESE_MNIST[0] * CHINESE_MNIST[1] * CHINESE_MNIST[2]}


def split_counts(name: str, dataset_cfg) -> dict[str, int] | None:
    """Images in the train / val / test splits of dataset ``name`` at its published size under its
    config (``val_fraction`` or ``fractions``); None for a dataset that is not one of the paper's."""
    if name == "food11":
        return {"train": FOOD11["training"], "val": FOOD11["validation"], "test": FOOD11["evaluation"]}
    if name in _TRAIN_TEST:
        train, test = _TRAIN_TEST[name]
        val = round(train * float(dataset_cfg.get("val_fraction", 0.1)))
        return {"train": train - val, "val": val, "test": test}
    if name in _UNSPLIT:
        total, (a, b, _) = _UNSPLIT[name], dataset_cfg.get("fractions", (0.8, 0.1, 0.1))
        train, val = round(total * a), round(total * b)
        return {"train": train, "val": val, "test": total - train - val}
    return None
