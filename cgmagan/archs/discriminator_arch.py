"""Conditional PatchGAN discriminator (pix2pix NLayerDiscriminator) on (image, heatmap)."""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """[B, in_ch, S, S] image + [B, 1, S, S] heatmap -> patch logits [B, 1, P, P]."""

    def __init__(self, in_ch: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch + 1, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))  # logits, no sigmoid
        self.body = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, heatmap: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([image, heatmap], 1))
