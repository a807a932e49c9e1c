"""Conditional PatchGAN discriminator (pix2pix NLayerDiscriminator) on (image, heatmap)."""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """[B, in_ch, S, S] image + [B, 1, S, S] heatmap -> patch logits [B, 1, P, P].

    ``spectral_norm``: every conv spectrally normalised (Miyato et al. 2018) and no BatchNorm,
    which bounds D's Lipschitz constant and steadies small-batch training.
    """

    def __init__(self, in_ch: int = 3, ndf: int = 64, n_layers: int = 3, spectral_norm: bool = False):
        super().__init__()
        conv = (lambda *a, **k: nn.utils.parametrizations.spectral_norm(nn.Conv2d(*a, **k))) if spectral_norm else nn.Conv2d
        layers: list[nn.Module] = [conv(in_ch + 1, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers.append(conv(ndf * prev, ndf * mult, 4, stride, 1, bias=spectral_norm))
            if not spectral_norm:
                layers.append(nn.BatchNorm2d(ndf * mult))
            layers.append(nn.LeakyReLU(0.2, True))
        layers.append(conv(ndf * mult, 1, 4, 1, 1))  # logits, no sigmoid
        self.body = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, heatmap: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([image, heatmap], 1))
