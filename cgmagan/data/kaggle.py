"""The paper's Kaggle datasets in their published layouts: Food-11, Animals-10, Chinese MNIST."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from cgmagan.data.files import IMAGE_SUFFIXES, FileDataModule, not_found

log = logging.getLogger(__name__)

FOOD11_CLASSES = ["Bread", "Dairy product", "Dessert", "Egg", "Fried food", "Meat", "Noodles-Pasta", "Rice",
                  "Seafood", "Soup", "Vegetable-Fruit"]  # fmt: skip
ANIMALS10 = {"cane": "dog", "cavallo": "horse", "elefante": "elephant", "farfalla": "butterfly", "gallina": "chicken",
             "gatto": "cat", "mucca": "cow", "pecora": "sheep", "ragno": "spider", "scoiattolo": "squirrel"}  # fmt: skip


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def _canonical(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


class Food11DataModule(FileDataModule):
    """Food-11: ``training/ validation/ evaluation/`` of ``{label}_{index}.jpg``, or the
    re-packaged variant with one folder per class inside each split (detected)."""

    name = "food11"
    title = "Food-11"
    class_names = FOOD11_CLASSES
    channels = 3
    mean = (0.55, 0.45, 0.35)
    std = (0.25, 0.25, 0.26)
    layout = (
        "  <root>/training/0_0.jpg, 0_1.jpg, …, 10_993.jpg   ({label}_{index}.jpg, label 0–10)\n"
        "  <root>/validation/…   <root>/evaluation/…\n"
        "or, re-packaged: <root>/training/<class>/*.jpg (classes: " + ", ".join(FOOD11_CLASSES) + "), same splits"
    )
    SPLITS = {"train": "training", "val": "validation", "test": "evaluation"}

    def _split_items(self, folder: Path) -> list[tuple[Path, int]]:
        flat = [(p, int(p.stem.split("_")[0])) for p in _images(folder) if re.fullmatch(r"\d+_\d+", p.stem)]
        if flat:
            if any(not 0 <= y < 11 for _, y in flat):
                raise not_found(self.title, self.root, self.layout, folder)
            return flat
        by_name = {_canonical(c): i for i, c in enumerate(FOOD11_CLASSES)}
        items = []
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
            label = by_name.get(_canonical(sub.name))
            if label is None:
                raise not_found(self.title, self.root, self.layout, folder)
            items += [(p, label) for p in _images(sub)]
        return items

    def index(self):
        out = {}
        for split, folder in self.SPLITS.items():
            items = self._split_items(self.root / folder)
            if not items:
                raise not_found(self.title, self.root, self.layout, self.root / folder if self.root.is_dir() else None)
            out[split] = items
        return out


class Animals10DataModule(FileDataModule):
    """Animals-10: ``raw-img/<italian class>/`` image files; English class names reported."""

    name = "animals10"
    title = "Animals-10"
    class_names = list(ANIMALS10.values())
    channels = 3
    mean = (0.52, 0.50, 0.41)
    std = (0.27, 0.26, 0.28)
    layout = "  <root>/raw-img/{" + ",".join(ANIMALS10) + "}/*.jpeg|*.jpg|*.png"

    def index(self):
        folder = self.root / "raw-img"
        items = []
        for label, italian in enumerate(ANIMALS10):
            items += [(p, label) for p in _images(folder / italian)]
        missing = [c for c in ANIMALS10 if not _images(folder / c)]
        if missing:
            raise not_found(self.title, self.root, self.layout + f"\n  (no images for: {', '.join(missing)})", folder)
        return {"train": items, "val": None, "test": None}


class ChineseMNISTDataModule(FileDataModule):
    """Chinese MNIST: ``chinese_mnist.csv`` (suite_id, sample_id, code, value, character) beside a
    folder of ``input_{suite_id}_{sample_id}_{code}.jpg``; 15 classes (codes 1–15)."""

    name = "chinese_mnist"
    title = "Chinese MNIST"
    channels = 1
    mean = (0.1,)
    std = (0.25,)
    layout = (
        "  <root>/chinese_mnist.csv   columns suite_id,sample_id,code,value,character\n"
        "  <root>/data/data/input_{suite_id}_{sample_id}_{code}.jpg   (or <root>/data/ or <root>/images/)"
    )
    IMAGE_FOLDERS = ("data/data", "data", "images", ".")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_names = [str(c) for c in range(1, 16)]

    def index(self):
        table = self.root / "chinese_mnist.csv"
        if not table.is_file():
            raise not_found(self.title, self.root, self.layout)
        with open(table, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        needed = {"suite_id", "sample_id", "code", "value", "character"}
        if not rows or not needed <= set(rows[0]):
            raise not_found(self.title, self.root, self.layout + f"\n  ({table.name} lacks columns {needed})")
        names = {}
        for r in rows:
            names[int(r["code"])] = f"{r['value']} {r['character']}"
        self.class_names = [names.get(c, str(c)) for c in range(1, 16)]
        folder = next((self.root / f for f in self.IMAGE_FOLDERS if any((self.root / f).glob("input_*_*_*.jpg"))), None)
        if folder is None:
            raise not_found(self.title, self.root, self.layout)
        items = [(folder / f"input_{r['suite_id']}_{r['sample_id']}_{r['code']}.jpg", int(r["code"]) - 1) for r in rows]
        present = [it for it in items if it[0].is_file()]
        if len(present) < len(items):
            log.warning("chinese_mnist: %d rows of %s have no image file; skipped", len(items) - len(present), table)
        return {"train": present, "val": None, "test": None}
