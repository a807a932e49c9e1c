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


def keep_terms(maps: torch.Tensor, inputs: torch.Tensor | list[torch.Tensor], classes: torch.Tensor, combos: torch.Tensor,
               classifiers: list[nn.Module]) -> KeepTerms:  # fmt: skip
    """``maps`` [B, 1, S, S] in [0, 1]; ``inputs`` each row's classifier input, [B, C, H, W] or a list of
    B [C, H, W] when the classifiers take other shapes; ``classes`` [B] the explained class; ``combos``
    [B] which of ``classifiers`` (frozen, eval mode) explains each row. Each map is upsampled to its
    input's size (bilinear) and multiplies it; gradients reach the maps only."""
    ce = maps.new_zeros(len(maps))
    for c, classifier in enumerate(classifiers):
        rows = (combos == c).nonzero()[:, 0]
        if not len(rows):
            continue
        x = inputs[rows] if isinstance(inputs, torch.Tensor) else torch.stack([inputs[i] for i in rows.tolist()])
        masks = F.interpolate(maps[rows], size=x.shape[-2:], mode="bilinear", align_corners=False)
        ce = ce.index_copy(0, rows, F.cross_entropy(classifier(x * masks), classes[rows], reduction="none"))
    return KeepTerms(ce.mean(), maps.flatten(1).mean(1).mean(), roughness(maps).mean())
