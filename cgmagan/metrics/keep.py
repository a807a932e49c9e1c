"""The faithfulness objective of TAME / L-CAM for a map generator: the image multiplied by the map
must keep the classifier's decision, with the smallest and smoothest map that does."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class KeepTerms:
    """Per batch means: cross-entropy of the explained class on the masked image, the map's area
    (its mean) and roughness (squared differences of neighbouring pixels)."""

    keep: torch.Tensor
    area: torch.Tensor
    smoothness: torch.Tensor

    def total(self, area_weight: float, smoothness_weight: float) -> torch.Tensor:
        return self.keep + area_weight * self.area + smoothness_weight * self.smoothness


def roughness(maps: torch.Tensor) -> torch.Tensor:
    """[B, 1, S, S] -> [B]: mean squared difference of vertical and of horizontal neighbours."""
    dy = (maps[..., 1:, :] - maps[..., :-1, :]).pow(2).flatten(1).mean(1)
    dx = (maps[..., :, 1:] - maps[..., :, :-1]).pow(2).flatten(1).mean(1)
    return dy + dx


def keep_terms(maps: torch.Tensor, groups: dict[int, tuple[torch.Tensor, torch.Tensor]], classes: torch.Tensor,
               classifiers: list[nn.Module]) -> KeepTerms:  # fmt: skip
    """``maps`` [B, 1, S, S] in [0, 1]; ``groups`` maps classifier c (of ``classifiers``, frozen, eval
    mode) to its rows of the batch [n] and their classifier inputs [n, C, H, W], grouped by the loader
    (:func:`cgmagan.data.cgma_datamodule.group_by_combination`: no host sync here); ``classes`` [B] the
    explained class. Each map is upsampled to its input's size (bilinear) and multiplies it;
    gradients reach the maps only."""
    ce = maps.new_zeros(len(maps))
    for c, (rows, x) in groups.items():
        masks = F.interpolate(maps[rows], size=x.shape[-2:], mode="bilinear", align_corners=False)
        ce = ce.index_copy(0, rows, F.cross_entropy(classifiers[c](x * masks), classes[rows], reduction="none"))
    return KeepTerms(ce.mean(), maps.flatten(1).mean(1).mean(), roughness(maps).mean())
