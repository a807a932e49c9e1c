"""Building blocks of the SFT generators (SFTGAN / BasicSR style)."""

from __future__ import annotations

import torch
from torch import nn


class ConditionNet(nn.Module):
    """Turns maps into SFT conditions: conv k4 -> three 1x1 convs -> conv to ``out_ch``.

    [N, in_ch, S, S] -> [N, out_ch, S, S]; the k4 conv is padded (1, 2) so S is kept.
    """

    def __init__(self, in_ch: int = 1, hidden: int = 128, out_ch: int = 32):
        super().__init__()
        act = nn.LeakyReLU(0.1, inplace=True)
        self.body = nn.Sequential(
            nn.ZeroPad2d((1, 2, 1, 2)),
            nn.Conv2d(in_ch, hidden, 4), act,
            nn.Conv2d(hidden, hidden, 1), act,
            nn.Conv2d(hidden, hidden, 1), act,
            nn.Conv2d(hidden, hidden, 1), act,
            nn.Conv2d(hidden, out_ch, 1),
        )  # fmt: skip

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.body(maps)


class SFTLayer(nn.Module):
    """Spatial feature transform: ``feat * (1 + scale(cond)) + shift(cond)``."""

    def __init__(self, nf: int = 64, cond_nf: int = 32):
        super().__init__()
        self.scale = nn.Sequential(
            nn.Conv2d(cond_nf, cond_nf, 1), nn.LeakyReLU(0.1, inplace=True), nn.Conv2d(cond_nf, nf, 1)
        )
        self.shift = nn.Sequential(
            nn.Conv2d(cond_nf, cond_nf, 1), nn.LeakyReLU(0.1, inplace=True), nn.Conv2d(cond_nf, nf, 1)
        )

    def forward(self, feat: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # feat [B, nf, S, S], cond [B, cond_nf, S, S]
        return feat * (1 + self.scale(cond)) + self.shift(cond)


class ResBlockSFT(nn.Module):
    """SFT -> conv -> ReLU -> SFT -> conv, plus identity."""

    def __init__(self, nf: int = 64, cond_nf: int = 32):
        super().__init__()
        self.sft0 = SFTLayer(nf, cond_nf)
        self.conv0 = nn.Conv2d(nf, nf, 3, padding=1)
        self.sft1 = SFTLayer(nf, cond_nf)
        self.conv1 = nn.Conv2d(nf, nf, 3, padding=1)

    def forward(self, feat: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.conv0(self.sft0(feat, cond)))
        out = self.conv1(self.sft1(out, cond))
        return feat + out


class ResBlock(nn.Module):
    """conv -> ReLU -> conv, plus identity (no condition)."""

    def __init__(self, nf: int = 64):
        super().__init__()
        self.conv0 = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv1 = nn.Conv2d(nf, nf, 3, padding=1)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return feat + self.conv1(torch.relu(self.conv0(feat)))


class HeatmapHead(nn.Module):
    """Image stem and 1-channel output shared by both generators.

    ``cgma_skip`` = K > 0 adds a per-pixel linear function of the K CGMAs (a 1x1 conv) to the
    output: the learned linear baseline becomes a path of the generator, and the trunk learns what
    it misses. The output is the sigmoid of the sum (the paper's), or with ``linear_output`` the sum
    clamped to [0, 1], which is :mod:`cgmagan.linear_baseline`'s form: the trunk's last conv starts
    at zero, so after :meth:`start_at` the generator's map is the baseline's until training moves it.
    """

    def __init__(self, in_ch: int = 3, nf: int = 64, cgma_skip: int = 0, linear_output: bool = False):
        super().__init__()
        if linear_output and not cgma_skip:
            raise ValueError("linear_output needs the linear CGMA path (cgma_skip): set gan.cgma_skip=true "
                             "or gan.start_at_linear=false")  # fmt: skip
        self.stem = nn.Conv2d(in_ch, nf, 3, padding=1)
        self.trunk_out = nn.Conv2d(nf, nf, 3, padding=1)
        self.out = nn.Sequential(
            nn.Conv2d(nf, nf, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(nf, 1, 3, padding=1)
        )
        self.skip = nn.Conv2d(cgma_skip, 1, 1) if cgma_skip else None
        self.linear_output = linear_output
        if linear_output:  # the trunk adds nothing before training (ControlNet's zero conv)
            nn.init.zeros_(self.out[-1].weight)
            nn.init.zeros_(self.out[-1].bias)

    @torch.no_grad()
    def start_at(self, weights: torch.Tensor) -> None:
        """Set the linear CGMA path to :func:`cgmagan.linear_baseline.fit`'s weights [K + 1] (bias last)."""
        if self.skip is None:
            raise ValueError("this generator has no linear CGMA path (cgma_skip) to start from")
        k = self.skip.in_channels
        if weights.shape != (k + 1,):
            raise ValueError(f"the linear baseline has {len(weights) - 1} CGMA weights, the generator {k}")
        self.skip.weight.copy_(weights[:k].view(1, k, 1, 1))
        self.skip.bias.copy_(weights[k:])

    def finish(self, stem_feat: torch.Tensor, trunk_feat: torch.Tensor, cgmas: torch.Tensor) -> torch.Tensor:
        # global skip around the residual trunk, then the 1-channel heatmap in [0, 1]
        feat = stem_feat + self.trunk_out(trunk_feat)  # [B, nf, S, S]
        logit = self.out(feat)  # [B, 1, S, S]
        if self.skip is not None:
            logit = logit + self.skip(cgmas)
        if not self.linear_output:
            return torch.sigmoid(logit)
        return ClampPullBack.apply(logit)


class ClampPullBack(torch.autograd.Function):
    """``x.clamp(0, 1)`` whose gradient also reaches a value beyond the range when it would move
    it back inside: a pixel at 1.3 whose target is 0.8 learns (a plain clamp gives it no gradient),
    while a penalty that pushes a pixel at -0.3 further down (the map's area) does not drive it on."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(0, 1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # a descent step moves x by -grad: below 0 only a negative grad brings it back, above 1 only a positive one
        inward = ((x >= 0) & (x <= 1)) | ((x < 0) & (grad < 0)) | ((x > 1) & (grad > 0))
        return grad * inward
