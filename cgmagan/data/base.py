"""What every classification data module offers the pipeline."""

from __future__ import annotations

import os

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, RandomSampler

from cgmagan.utils import per_process_batch


class TensorImageDataset(Dataset):
    """In-memory images in [0, 1] ([N, C, H, W] float), labels, optional object masks."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None = None):
        self.images, self.labels, self.masks = images, labels, masks

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        if self.masks is None:
            return self.images[i], int(self.labels[i])
        return self.images[i], int(self.labels[i]), self.masks[i]


class EpochShuffle(RandomSampler):
    """A random order that depends on the seed and the epoch only (Lightning calls ``set_epoch``):
    a run resumed at epoch e sees the orders an uninterrupted run would. A DataLoader's own
    generator would carry its state from epoch to epoch, which a checkpoint does not keep."""

    def __init__(self, data: Dataset, seed: int):
        super().__init__(data, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed * 1_000_003 + epoch)


def processes(trainer: pl.Trainer | None) -> tuple[int, int]:
    """(this process's rank, the number of processes) of a datamodule's trainer; (0, 1) without one."""
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)


def unrepeated_sampler(dataset: Dataset, trainer: pl.Trainer | None) -> UnrepeatedDistributedSampler | None:
    """Under DDP, rank r takes items r, r + world, ... with nothing padded or repeated, so that
    metrics summed over ranks equal one process's (Lightning's default sampler repeats items to
    even out the ranks). None in a single process."""
    rank, world = processes(trainer)
    if world <= 1:
        return None
    return UnrepeatedDistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)


def loader_workers(setting: int | str | None, device: torch.device) -> int:
    """Loader processes for decoding when a stage reads images itself (CGMA precompute, evaluation):
    ``setting`` when it is a number; null or "auto": none on the CPU (they would share its cores
    with the model), up to 8 on an accelerator, so that it does not wait on JPEG decoding."""
    if setting is not None and str(setting) != "auto":
        return int(setting)
    return 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` items drawn at random (by ``seed``) within each class, each class
    taking its share of ``n`` rounded by largest remainder, so every class count is within one of
    its exact share. All indices when ``n`` covers every item. File datasets list their images in
    class order: the first ``n`` rows would hold a few classes only."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    take = np.floor(exact).astype(int)
    take[np.argsort(take - exact, kind="stable")[: n - take.sum()]] += 1  # largest remainders first
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))


def stratified_split(labels: np.ndarray, fractions: tuple[float, float, float], seed: int) -> list[np.ndarray]:
    """Deterministic train/val/test index arrays with each class split by ``fractions``."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train = int(round(fractions[0] * len(idx)))
        n_val = int(round(fractions[1] * len(idx)))
        parts[0] += idx[:n_train].tolist()
        parts[1] += idx[n_train : n_train + n_val].tolist()
        parts[2] += idx[n_train + n_val :].tolist()
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


class ClassificationDataModule(pl.LightningDataModule):
    """Base: subclasses fill ``self.splits`` (train/val/test datasets of [0, 1] images).

    Images reach the classifier un-normalised; the classifier normalises with ``mean``/``std``
    itself, so explanations can multiply maps with images in pixel space.
    """

    name: str = ""
    class_names: list[str] = []
    channels: int = 3
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    has_masks: bool = False

    def __init__(self, input_size: int, batch_size: int = 64, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.input_size = input_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.splits: dict[str, Dataset] = {}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str | None:
        """A digest of the data itself, for the cache keys: another copy or version of a dataset
        gets other classifiers and CGMAs. None for data generated from its config alone (the
        config is in the keys already)."""
        return None

    def release(self) -> None:
        """Forget the loaded data; a later :meth:`dataset` reads it again. The stages call it when
        they are done with a combination, so that memory holds one dataset at a time. Data made in
        memory from the config (the embedded datasets, a few MB) is kept: remaking it costs more."""

    def labels(self, split: str) -> np.ndarray:
        """The class of every item of ``split``, without loading images."""
        return np.asarray(self.dataset(split).labels)

    def dataset(self, split: str) -> Dataset:
        if not self.splits:
            self.setup()
        return self.splits[split]

    def loader(self, split: str, shuffle: bool = False, batch_size: int | None = None, sampler=None) -> DataLoader:
        if shuffle:
            sampler = EpochShuffle(self.dataset(split), self.seed)
        return DataLoader(
            self.dataset(split),
            batch_size=batch_size or self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        # under DDP, Lightning shards it with its own sampler; batch_size is all the processes' batch together
        batch = per_process_batch(self.batch_size, processes(self.trainer)[1], "dataset.batch_size")
        return self.loader("train", shuffle=True, batch_size=batch)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", sampler=unrepeated_sampler(self.dataset("val"), self.trainer))

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", sampler=unrepeated_sampler(self.dataset("test"), self.trainer))


class GeneratedScenesDataModule(ClassificationDataModule):
    """Base of the datasets rendered from the seed with object masks (shapes, textures): a subclass
    names its ``render(n, seed)`` -> images [n, 3, S, S], labels [n], masks [n, S, S] (numpy)."""

    channels = 3
    has_masks = True
    seed_offset = 0  # keeps two generated datasets' random streams apart

    def __init__(self, input_size: int = 32, split_sizes=(1600, 200, 400), **kwargs):
        super().__init__(input_size, **kwargs)
        self.split_sizes = tuple(split_sizes)

    def render(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        for offset, (split, n) in enumerate(zip(("train", "val", "test"), self.split_sizes)):
            # each split from its own seed, so changing one split size leaves the others alone
            rendered = self.render(n, self.seed * 1000 + self.seed_offset + offset)
            images, labels, masks = (a.copy() for a in rendered)  # rendering may be cached: a copy of our own
            self.splits[split] = TensorImageDataset(
                torch.from_numpy(images), torch.from_numpy(labels).long(), torch.from_numpy(masks)
            )
