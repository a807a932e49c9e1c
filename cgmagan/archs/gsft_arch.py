"""GSFT generator: the K CGMAs stacked as one condition shared by every SFT block."""

from __future__ import annotations

import torch
from torch import nn

from cgmagan.archs.sft_arch import ConditionNet, HeatmapHead, ResBlockSFT


class GSFTGenerator(nn.Module):
    """Global SFT (paper: 64 channels, 32 SFT residual blocks)."""

    def __init__(
        self,
        num_cgmas: int = 8,
        in_ch: int = 3,
        nf: int = 64,
        cond_nf: int = 32,
        cond_hidden: int = 128,
        num_blocks: int = 32,
        cgma_skip: bool = False,
        linear_output: bool = False,
    ):
        super().__init__()
        self.num_cgmas = num_cgmas
        self.head = HeatmapHead(in_ch, nf, cgma_skip=num_cgmas if cgma_skip else 0, linear_output=linear_output)
        self.condition = ConditionNet(num_cgmas, cond_hidden, cond_nf)
        self.blocks = nn.ModuleList(ResBlockSFT(nf, cond_nf) for _ in range(num_blocks))

    def forward(self, image: torch.Tensor, cgmas: torch.Tensor) -> torch.Tensor:
        # image [B, 3, S, S], cgmas [B, K, S, S] -> heatmap [B, 1, S, S]
        if cgmas.shape[1] != self.num_cgmas:
            raise ValueError(f"GSFTGenerator was built for {self.num_cgmas} CGMAs, got {cgmas.shape[1]}")
        cond = self.condition(cgmas)  # [B, cond_nf, S, S]
        stem = self.head.stem(image)
        feat = stem
        for block in self.blocks:
            feat = block(feat, cond)
        return self.head.finish(stem, feat, cgmas)
