"""MNIST, EMNIST and CIFAR-10 through torchvision's dataset classes (official train/test splits;
validation carved from train by the seed), kept at their stored resolution and resized per item.
Nothing is downloaded unless ``download=true``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import Dataset

from cgmagan.data.base import ClassificationDataModule, stratified_split
from cgmagan.data.files import not_found


class _CIFAR10(torchvision.datasets.CIFAR10):
    # torchvision checks the release's md5 sums; readable batch files in its layout are enough
    train_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.test_list]
    meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}


class NativeImages(Dataset):
    """Items ``indices`` of images stored at their own resolution (uint8 [N, H, W] or [N, H, W, C],
    a torch tensor or numpy array as torchvision holds it), each resized bilinearly to ``size`` in
    [0, 1] when read: memory holds the stored dataset (CIFAR-10: 180 MB), not its upsampled copy
    (39 GB at 256x256), and the resize runs in the loader's workers."""

    def __init__(self, pixels, labels: np.ndarray, indices: np.ndarray, size: int):
        self.pixels, self.indices, self.size = pixels, indices, size
        self.labels = labels[indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        stored = torch.as_tensor(np.asarray(self.pixels[int(self.indices[i])]))
        x = stored.float().div(255)
        x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)  # [C, H, W]
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False)[0].clamp(0, 1)
        return x.contiguous(), int(self.labels[i])


class TorchvisionDataModule(ClassificationDataModule):
    """The official train and test files; validation carved from train by the seed. Each file is
    read when a split of it is first asked for, and :meth:`release` forgets them."""

    title = ""
    layout = ""
    FINGERPRINT_CHUNK = 4096  # images hashed at a time: no copy of a whole file

    def __init__(self, root: str, input_size: int, download: bool = False, val_fraction: float = 0.1, **kwargs):
        super().__init__(input_size, **kwargs)
        self.root = Path(root).expanduser()
        self.download = download
        self.val_fraction = val_fraction
        self._files: dict[bool, tuple] = {}  # train?: (pixels, labels) as stored
        self._fingerprint: str | None = None

    def _load(self, train: bool):
        raise NotImplementedError

    def _file(self, train: bool) -> tuple:
        if train not in self._files:
            try:
                ds = self._load(train)
            except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
                raise not_found(self.title, self.root,
                                self.layout + "\n  (or set dataset.download=true where a network exists)") from err  # fmt: skip
            self._files[train] = (ds.data, np.asarray(ds.targets, dtype=np.int64))
        return self._files[train]

    def _split(self, split: str) -> Dataset:
        if split == "test":
            pixels, labels = self._file(False)
            return NativeImages(pixels, labels, np.arange(len(labels)), self.input_size)
        pixels, labels = self._file(True)
        train, val, _ = stratified_split(labels, (1 - self.val_fraction, self.val_fraction, 0.0), self.seed)
        return NativeImages(pixels, labels, train if split == "train" else val, self.input_size)

    def dataset(self, split: str) -> Dataset:
        if split not in self.splits:
            self.splits[split] = self._split(split)
        return self.splits[split]

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val", "test"):
            self.dataset(split)

    def release(self) -> None:
        self.splits, self._files = {}, {}

    def fingerprint(self) -> str:
        """sha256 of both files' stored pixels and labels, hashed a chunk at a time, and of the
        validation split carved from train; once per run (about a second for CIFAR-10)."""
        if self._fingerprint is not None:
            return self._fingerprint
        h = hashlib.sha256()
        for train in (True, False):
            pixels, labels = self._file(train)
            for first in range(0, len(labels), self.FINGERPRINT_CHUNK):
                h.update(np.ascontiguousarray(np.asarray(pixels[first : first + self.FINGERPRINT_CHUNK])).tobytes())
            h.update(labels.tobytes())
        h.update(np.asarray(self.dataset("val").indices, dtype=np.int64).tobytes())
        self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


class MNISTDataModule(TorchvisionDataModule):
    name = "mnist"
    title = "MNIST"
    class_names = [str(d) for d in range(10)]
    channels = 1
    mean = (0.1307,)
    std = (0.3081,)
    layout = "  <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte   (torchvision's layout)"

    def _load(self, train: bool):
        return torchvision.datasets.MNIST(str(self.root), train=train, download=self.download)


class EMNISTDataModule(TorchvisionDataModule):
    name = "emnist"
    title = "EMNIST"
    channels = 1
    mean = (0.1736,)
    std = (0.3317,)
    layout = "  <root>/EMNIST/raw/emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte   (torchvision's layout)"

    def __init__(self, *args, split: str = "balanced", **kwargs):
        super().__init__(*args, **kwargs)
        self.split = split
        self.class_names = list(torchvision.datasets.EMNIST.classes_split_dict[split])

    def _load(self, train: bool):
        ds = torchvision.datasets.EMNIST(str(self.root), split=self.split, train=train, download=self.download)
        ds.data = ds.data.transpose(1, 2)  # EMNIST images are stored transposed
        return ds


class CIFAR10DataModule(TorchvisionDataModule):
    name = "cifar10"
    title = "CIFAR-10"
    class_names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    channels = 3
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    layout = "  <root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}   (the python pickle release)"

    def _load(self, train: bool):
        return _CIFAR10(str(self.root), train=train, download=self.download)
