"""LSFT generator: CGMA k conditions SFT block group k, in layer order."""

from __future__ import annotations

import torch
from torch import nn

from cgmagan.archs.sft_arch import ConditionNet, HeatmapHead, ResBlock, ResBlockSFT


class LSFTGenerator(nn.Module):
    """Local SFT: one shared condition network turns each CGMA into its own condition.

    Trunk (paper: 8 SFT blocks alternating with 7 plain residual blocks): for k = 1..K,
    ``sft_per_group`` SFT blocks conditioned on CGMA k, then a plain block between groups.
    """

    def __init__(
        self,
        num_cgmas: int = 8,
        in_ch: int = 3,
        nf: int = 64,
        cond_nf: int = 32,
        cond_hidden: int = 128,
        sft_per_group: int = 1,
        plain_between_groups: bool = True,
        cgma_skip: bool = False,
        linear_output: bool = False,
    ):
        super().__init__()
        self.num_cgmas = num_cgmas
        self.head = HeatmapHead(in_ch, nf, cgma_skip=num_cgmas if cgma_skip else 0, linear_output=linear_output)
        self.condition = ConditionNet(1, cond_hidden, cond_nf)
        self.groups = nn.ModuleList(
            nn.ModuleList(ResBlockSFT(nf, cond_nf) for _ in range(sft_per_group)) for _ in range(num_cgmas)
        )
        n_plain = num_cgmas - 1 if plain_between_groups else 0
        self.plain = nn.ModuleList(ResBlock(nf) for _ in range(n_plain))

    def conditions(self, cgmas: torch.Tensor) -> torch.Tensor:
        """[B, K, S, S] -> [B, K, cond_nf, S, S] in one call of the condition network."""
        b, k, s1, s2 = cgmas.shape
        if k != self.num_cgmas:
            raise ValueError(f"LSFTGenerator was built for {self.num_cgmas} CGMAs, got {k}")
        return self.condition(cgmas.reshape(b * k, 1, s1, s2)).view(b, k, -1, s1, s2)

    def forward(self, image: torch.Tensor, cgmas: torch.Tensor) -> torch.Tensor:
        # image [B, 3, S, S] normalised, cgmas [B, K, S, S] in [0, 1] -> heatmap [B, 1, S, S]
        # unbound once: indexing conds[:, k] in the loop costs a zero-filled [B, K, ...] gradient per group
        conds = self.conditions(cgmas).unbind(1)
        stem = self.head.stem(image)
        feat = stem
        for k, group in enumerate(self.groups):
            for block in group:
                feat = block(feat, conds[k])
            if k < len(self.plain):
                feat = self.plain[k](feat)
        return self.head.finish(stem, feat, cgmas)
