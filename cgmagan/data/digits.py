"""scikit-learn's bundled 8x8 handwritten digits (1,797 real images), always offline."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from cgmagan.data.base import ClassificationDataModule, TensorImageDataset, stratified_split


class DigitsDataModule(ClassificationDataModule):
    name = "digits"
    class_names = [str(d) for d in range(10)]
    channels = 1
    mean = (0.2,)
    std = (0.3,)

    def __init__(self, input_size: int = 32, fractions=(0.7, 0.1, 0.2), **kwargs):
        super().__init__(input_size, **kwargs)
        self.fractions = tuple(fractions)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        bunch = load_digits()
        images = torch.from_numpy(bunch.images).float().div(16.0).unsqueeze(1)  # [N, 1, 8, 8]
        images = F.interpolate(images, size=self.input_size, mode="bilinear", align_corners=False).clamp(0, 1)
        labels = torch.from_numpy(bunch.target).long()
        for split, idx in zip(("train", "val", "test"), stratified_split(bunch.target, self.fractions, self.seed)):
            self.splits[split] = TensorImageDataset(images[idx], labels[idx])
