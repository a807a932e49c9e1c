"""The learned baseline without a GAN: the target Grad-CAM as one linear function of the K CGMAs
(plus a bias), the same K + 1 weights at every pixel, fit by least squares on the GAN's training
data (every training combination's train split).

With K equal to the number of layers, the target among them and forward order, the target is
exactly L·C_L − (L−1)·C_(L−1): whatever the GAN scores beyond this model is what it learned
beyond K + 1 numbers."""

from __future__ import annotations

import numpy as np
import torch

from cgmagan.data.cgma_store import ShardedArrays
from cgmagan.metrics.agreement import dice_at_threshold


def _design(cgmas: torch.Tensor) -> torch.Tensor:
    """[N, K, S, S] -> [N·S·S, K + 1]: each pixel's K CGMA values and a 1 for the bias."""
    x = cgmas.permute(0, 2, 3, 1).reshape(-1, cgmas.shape[1]).double()
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)


def normal_equations(cgmas: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(XᵀX, Xᵀy) of one chunk, in float64: chunks add up, so the fit streams over a whole cache."""
    x = _design(cgmas)
    return x.T @ x, x.T @ targets.reshape(-1, 1).double()


def solve(xtx: torch.Tensor, xty: torch.Tensor) -> torch.Tensor:
    """The K + 1 weights (the bias last) minimising the squared error; least norm when X is rank-deficient."""
    return torch.linalg.lstsq(xtx, xty).solution[:, 0].float()


def fit(cgmas: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Weights [K + 1] from CGMAs [N, K, S, S] and targets [N, S, S]."""
    return solve(*normal_equations(cgmas, targets))


def fit_on_cache(train_splits: list[dict[str, ShardedArrays]]) -> torch.Tensor:
    """Weights from every row of the given cached splits, one shard in memory at a time."""
    xtx = xty = None
    for arrays in train_splits:
        for cgmas, targets in zip(arrays["cgma"].parts, arrays["target"].parts):
            # on the host, where the cache is read: K + 1 sums per shard
            # (a copy: the shards are read-only memory maps, which torch will not wrap)
            a, b = normal_equations(torch.as_tensor(np.array(cgmas, dtype=np.float32), device="cpu"),
                                    torch.as_tensor(np.array(targets, dtype=np.float32), device="cpu"))  # fmt: skip
            xtx, xty = (a, b) if xtx is None else (xtx + a, xty + b)
    return solve(xtx, xty)


def predict(weights: torch.Tensor, cgmas: torch.Tensor) -> torch.Tensor:
    """[B, K, S, S] -> heatmaps [B, S, S] in [0, 1]."""
    w = weights.to(cgmas.device, cgmas.dtype)
    return (torch.einsum("bkhw,k->bhw", cgmas, w[:-1]) + w[-1]).clamp(0, 1)


@torch.no_grad()
def validation_scores(weights: torch.Tensor, val_splits: list[dict[str, ShardedArrays]]) -> dict[str, float]:
    """The baseline's val/l1 and val/dice over the pooled validation splits, per image averaged as
    the GAN's validation logs them: the reference its learning curve is drawn against."""
    l1 = dice = 0.0
    n = 0
    for arrays in val_splits:
        for cgmas, targets in zip(arrays["cgma"].parts, arrays["target"].parts):
            pred = predict(weights, torch.as_tensor(np.array(cgmas, dtype=np.float32), device="cpu"))
            target = torch.as_tensor(np.array(targets, dtype=np.float32), device="cpu")
            l1 += float((pred - target).abs().flatten(1).mean(1).sum())
            dice += float(dice_at_threshold(pred, target).sum())
            n += len(pred)
    return {"val/l1": l1 / max(n, 1), "val/dice": dice / max(n, 1)}
