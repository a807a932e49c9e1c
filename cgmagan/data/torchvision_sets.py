"""MNIST, EMNIST and CIFAR-10 through torchvision's dataset classes (official train/test splits;
validation carved from train by the seed). Nothing is downloaded unless ``download=true``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from cgmagan.data.base import ClassificationDataModule, TensorImageDataset, stratified_split
from cgmagan.data.files import not_found


class _CIFAR10(torchvision.datasets.CIFAR10):
    # torchvision checks the release's md5 sums; readable batch files in its layout are enough
    train_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.test_list]
    meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}


class TorchvisionDataModule(ClassificationDataModule):
    title = ""
    layout = ""

    def __init__(self, root: str, input_size: int, download: bool = False, val_fraction: float = 0.1, **kwargs):
        super().__init__(input_size, **kwargs)
        self.root = Path(root).expanduser()
        self.download = download
        self.val_fraction = val_fraction
        self._fingerprint: str | None = None

    def _load(self, train: bool):
        raise NotImplementedError

    def _tensors(self, ds) -> tuple[torch.Tensor, torch.Tensor]:
        data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
        images = data.float().div(255)
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
        if images.shape[-1] != self.input_size:
            images = F.interpolate(images, size=self.input_size, mode="bilinear", align_corners=False).clamp(0, 1)
        return images.contiguous(), torch.as_tensor(np.asarray(ds.targets)).long()

    def fingerprint(self) -> str:
        """sha256 of every split's pixels and labels as loaded (about a second for CIFAR-10), once per run."""
        if self._fingerprint is not None:
            return self._fingerprint
        h = hashlib.sha256()
        for split in ("train", "val", "test"):
            ds = self.dataset(split)
            h.update(ds.images.numpy().tobytes())
            h.update(ds.labels.numpy().tobytes())
        self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        try:
            train, test = self._load(True), self._load(False)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            raise not_found(self.title, self.root, self.layout + "\n  (or set dataset.download=true where a network exists)") from err
        x, y = self._tensors(train)
        idx_train, idx_val, _ = stratified_split(y.numpy(), (1 - self.val_fraction, self.val_fraction, 0.0), self.seed)
        self.splits = {
            "train": TensorImageDataset(x[idx_train], y[idx_train]),
            "val": TensorImageDataset(x[idx_val], y[idx_val]),
            "test": TensorImageDataset(*self._tensors(test)),
        }


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
