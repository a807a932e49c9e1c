"""Test items for evaluation: the classifier's input image beside its CGMA cache row, checked to
belong together, one loader per combination, each split across DDP ranks without repeats."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cgmagan.data.base import unrepeated_sampler
from cgmagan.data.cgma_datamodule import to_rgb
from cgmagan.data.cgma_store import ShardedArrays
from cgmagan.errors import UserError

# cached images are float16 (~5e-4 resolution in [0, 1]); another image differs by far more
IMAGE_MATCH_ATOL = 5e-3


class CacheMismatchError(UserError):
    """A cache row does not hold the image the dataset has at that index."""


class EvaluationDataset(Dataset):
    """Item i: ``input`` (the test image as the classifier takes it), its cache row (``image``,
    ``cgma``, ``target``, ``penultimate``, ``pred``, ``label`` [, ``mask``]), ``index`` i and
    ``in_auc`` (whether deletion / insertion are computed for it), ``in_road`` (ROAD) and
    ``other_cgma``, the CGMAs of its ``partner`` item (zeros when it has none), for condition importance.

    ``dataset_indices[r]`` is the dataset item that cache row r holds; ``evaluated`` lists the
    cache rows to score, in order. Each item is checked: the cached label and the cached map-size
    image must be those of the dataset item, so a cache built from other data is never scored
    against these images.
    """

    def __init__(self, name: str, images: Dataset, rows: dict[str, ShardedArrays], dataset_indices: np.ndarray,
                 evaluated: np.ndarray, in_auc: np.ndarray, in_road: np.ndarray | None = None,
                 partner: np.ndarray | None = None):  # fmt: skip
        if len(dataset_indices) != len(rows["target"]) or len(in_auc) != len(evaluated):
            raise CacheMismatchError(f"{name}: the CGMA cache holds {len(rows['target'])} rows, but "
                                     f"{len(dataset_indices)} dataset items were listed for it")  # fmt: skip
        self.name, self.images, self.rows = name, images, rows
        self.dataset_indices, self.evaluated, self.in_auc = dataset_indices, evaluated, in_auc
        self.in_road = np.zeros(len(evaluated), bool) if in_road is None else in_road
        # item i's partner for condition importance ("another image's CGMAs"): an item index, -1 for none
        self.partner = np.full(len(evaluated), -1) if partner is None else partner

    def __len__(self) -> int:
        return len(self.evaluated)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        r = int(self.evaluated[i])
        d = int(self.dataset_indices[r])
        item = self.images[d]
        x, label = item[0], int(item[1])
        row = {k: torch.from_numpy(np.array(v[r])) for k, v in self.rows.items()}
        cached = row["image"].float()
        resized = F.interpolate(to_rgb(x[None].float()), size=cached.shape[-2:], mode="bilinear", align_corners=False)
        if int(row["label"]) != label or not torch.allclose(resized[0].clamp(0, 1), cached, atol=IMAGE_MATCH_ATOL):
            raise CacheMismatchError(
                f"{self.name}: CGMA cache row {r} does not hold test image {d} (label {int(row['label'])} vs {label}, "
                "or other pixels): the test data changed after the cache was built. Delete that combination's "
                "folders under <paths.cache_dir>/cgma and rerun."
            )
        j = int(self.partner[i])
        other = np.array(self.rows["cgma"][int(self.evaluated[j])]) if j >= 0 else np.zeros_like(row["cgma"].numpy())
        return {"index": torch.tensor(i), "in_auc": torch.tensor(bool(self.in_auc[i])),
                "in_road": torch.tensor(bool(self.in_road[i])), "input": x, "other_cgma": torch.from_numpy(other), **row}  # fmt: skip


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded random permutation of ``range(n)`` that moves every index (Sattolo's algorithm: one
    cycle through all n); the identity for n = 1, where no other index exists."""
    rng, perm = np.random.default_rng(seed), np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))
        perm[i], perm[j] = perm[j], perm[i]
    return perm


class EvaluationDataModule(pl.LightningDataModule):
    """One test loader per combination, in the order of ``datasets``."""

    def __init__(self, datasets: list[EvaluationDataset], batch_size: int = 64, num_workers: int = 0,
                 pin_memory: bool = False):  # fmt: skip
        super().__init__()
        self.datasets, self.batch_size, self.num_workers, self.pin_memory = datasets, batch_size, num_workers, pin_memory

    def test_dataloader(self) -> list[DataLoader]:
        return [
            DataLoader(ds, batch_size=self.batch_size, num_workers=self.num_workers, pin_memory=self.pin_memory,
                       sampler=unrepeated_sampler(ds, getattr(self, "trainer", None)))
            for ds in self.datasets
        ]  # fmt: skip
