"""Datasets stored as image files, read in any size, mode (L, RGB, RGBA, P, CMYK) and format."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from cgmagan.data.base import ClassificationDataModule, stratified_split
from cgmagan.errors import DatasetNotFoundError, DatasetTooSmallError
from cgmagan.utils import digest, write_json_atomic

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


# grey modes deeper than 8 bits, with the value of white: PIL's convert("L") clips them, so a
# 16-bit image would load as pure white
_DEEP_GREY = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}


def _deep_grey(img: Image.Image) -> Image.Image:
    """A 16/32-bit integer or float grey image as a float image in [0, 1] (mode F)."""
    arr = np.asarray(img, dtype=np.float64)
    white = _DEEP_GREY[img.mode]
    if img.mode == "I" and arr.max() > 65535:  # a genuine 32-bit image, not a 16-bit PNG read as I
        white = 2**32 - 1
    return Image.fromarray((arr / white).clip(0, 1).astype(np.float32), "F")


def load_image(path: Path, channels: int, size: int | None) -> torch.Tensor:
    """[channels, size, size] float in [0, 1] (``size`` None: the file's own height and width);
    transparency is composited on black, 16-bit and float grey images are scaled by their own white."""
    with Image.open(path) as img:
        shape = (size, size) if size is not None else img.size
        if img.mode in _DEEP_GREY:
            grey = np.asarray(_deep_grey(img).resize(shape, Image.BILINEAR), dtype=np.float32)
            arr = np.repeat(grey[..., None], channels, axis=2)
        else:
            img = img.convert("RGBA").convert("RGB") if img.mode in ("P", "LA", "RGBA", "PA") else img
            img = img.convert("L" if channels == 1 else "RGB").resize(shape, Image.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr)).view(shape[1], shape[0], channels).permute(2, 0, 1).contiguous()


def readable(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.load()
        return True
    except Exception:  # PIL raises many kinds for damaged files  # noqa: BLE001
        return False


def warn_if_constant(dataset: Dataset, what: str, probe: int = 16) -> bool:
    """Warn when the first ``probe`` images all hold one value each (blank input: a wrong bit depth
    or a broken export trains every stage on nothing). Returns whether it warned."""
    images = [dataset[i][0] for i in range(min(probe, len(dataset)))]
    if images and all(float(x.max() - x.min()) == 0 for x in images):
        log.warning("%s: the first %d images are each a single flat value (e.g. %.3f everywhere); check the files' "
                    "bit depth and content", what, len(images), float(images[0].flatten()[0]))  # fmt: skip
        return True
    return False


class CheckedImages:
    """Which image files of a dataset decode, remembered in ``folder`` by path, size and modification
    time: a rerun decodes only new or changed files (Food-11 holds 16k). No folder: nothing is
    remembered between runs."""

    def __init__(self, folder: Path | None, root: Path):
        self.root = root.absolute()
        self.path = folder / f"{digest(str(self.root))}.json" if folder else None
        self._known: dict | None = None  # read once, then kept up to date in memory

    def _load(self) -> dict:
        if self.path is None:
            return {}
        try:
            record = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):  # first run, or a damaged record: check again
            return {}
        return record.get("files", {}) if record.get("root") == str(self.root) else {}

    def readable(self, paths: list[Path], what: str) -> list[bool]:
        if self._known is None:
            self._known = self._load()
        known, ok, fresh = self._known, [], 0
        for path in tqdm(paths, desc=f"checking {what} images", leave=False):
            st = path.stat()
            name, stamp = str(path.absolute().relative_to(self.root)), [st.st_size, st.st_mtime_ns]
            entry = known.get(name)
            if entry is None or entry[:2] != stamp:
                entry, fresh = [*stamp, readable(path)], fresh + 1
                known[name] = entry
            ok.append(bool(entry[2]))
        if self.path is not None:
            if fresh:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(self.path, {"root": str(self.root), "files": known})
            log.info("%s: %d images, %d decoded now, %d known from %s", what, len(paths), fresh, len(paths) - fresh,
                     self.path)  # fmt: skip
        return ok


class ImageFileDataset(Dataset):
    def __init__(self, items: list[tuple[Path, int]], channels: int, size: int):
        self.items, self.channels, self.size = items, channels, size

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> list[int]:
        return [y for _, y in self.items]

    def __getitem__(self, i: int):
        path, label = self.items[i]
        return load_image(path, self.channels, self.size), label


def describe_folder(folder: Path, limit: int = 8) -> str:
    """What is actually at ``folder``, for error messages."""
    if not folder.exists():
        return f"{folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not entries:
        return f"{folder} is empty"
    more = f" … and {len(entries) - limit} more" if len(entries) > limit else ""
    return f"{folder} holds: {', '.join(entries[:limit])}{more}"


def not_found(title: str, root: Path, layout: str, looked_at: Path | None = None) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{title} was not found in its published layout under {root}.\n"
        f"Expected layout:\n{layout}\n"
        f"Found instead: {describe_folder(looked_at or root)}.\n"
        f"Put the dataset there, or point paths.data_dir (or dataset.root) at the folder that holds it."
    )


class FileDataModule(ClassificationDataModule):
    """Base for file datasets: subclasses return ``{split: [(path, label)]}`` from :meth:`index`
    (with ``None`` for splits to carve from ``train`` deterministically)."""

    title: str = ""
    layout: str = ""

    def __init__(self, root: str, input_size: int, fractions=(0.8, 0.1, 0.1), checked_dir: str | None = None, **kwargs):
        super().__init__(input_size, **kwargs)
        self.root = Path(root).expanduser()
        self.fractions = tuple(fractions)
        self.checked = CheckedImages(Path(checked_dir).expanduser() if checked_dir else None, self.root)
        self.skipped: list[Path] = []
        self._fingerprint: str | None = None

    def index(self) -> dict[str, list[tuple[Path, int]] | None]:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Every split's files (path under the root, label, size, modification time): changing,
        adding or removing one image changes it, without reading any image. Computed once per run."""
        if self._fingerprint is not None:
            return self._fingerprint
        listing = []
        for split in ("train", "val", "test"):
            for path, label in self.dataset(split).items:
                st = path.stat()
                listing.append((split, str(path.relative_to(self.root)), label, st.st_size, st.st_mtime_ns))
        self._fingerprint = digest(listing)
        return self._fingerprint

    def release(self) -> None:
        self.splits = {}  # the file lists; which files decode stays known (CheckedImages)

    def _split_missing(self, index: dict) -> dict[str, list[tuple[Path, int]]]:
        if index.get("val") is not None and index.get("test") is not None:
            return index
        items = index["train"]
        labels = np.array([y for _, y in items])
        if index.get("test") is None:  # no official test split: train/val/test from the seed
            parts = stratified_split(labels, self.fractions, self.seed)
            return {s: [items[i] for i in p] for s, p in zip(("train", "val", "test"), parts)}
        # an official test split but no validation split: carve val from train
        f_val = self.fractions[1] / (self.fractions[0] + self.fractions[1])
        train_idx, val_idx, _ = stratified_split(labels, (1 - f_val, f_val, 0.0), self.seed)
        return {"train": [items[i] for i in train_idx], "val": [items[i] for i in val_idx], "test": index["test"]}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.skipped = []
        index = self._split_missing(self.index())
        if not all(index.values()):
            counts = ", ".join(f"{split} {len(items)}" for split, items in index.items())
            per_class = np.bincount([y for items in index.values() for _, y in items], minlength=self.num_classes)
            raise DatasetTooSmallError(
                f"{self.title} was found under {self.root}, but it is too small for its splits: {counts} images "
                f"(fractions {self.fractions}; {per_class.min()} to {per_class.max()} images per class). Add images "
                "(a few per class in every split at least) or change dataset.fractions."
            )
        for split, items in index.items():
            ok = self.checked.readable([p for p, _ in items], f"{self.name} {split}")
            good = [it for it, fine in zip(items, ok) if fine]
            bad = [p for (p, _), fine in zip(items, ok) if not fine]
            if bad:
                self.skipped += bad
                log.warning("%s %s: skipped %d unreadable image(s), e.g. %s", self.name, split, len(bad), bad[0])
            if not good:
                raise DatasetTooSmallError(f"{self.title} under {self.root}: none of the {len(items)} {split} images "
                                           f"can be read (e.g. {bad[0]}); replace the damaged files")  # fmt: skip
            self.splits[split] = ImageFileDataset(good, self.channels, self.input_size)
            warn_if_constant(self.splits[split], f"{self.name} {split}")
