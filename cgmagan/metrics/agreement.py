"""Agreement of a heatmap with the target Grad-CAM, per image (maps [N, S, S] in [0, 1])."""

from __future__ import annotations

import torch
from torchmetrics.functional import spearman_corrcoef


def _flat(m: torch.Tensor) -> torch.Tensor:
    return m.float().flatten(1)


def _dice(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    inter = (a * b).sum(1)
    total = a.sum(1) + b.sum(1)
    return torch.where(total > 0, 2 * inter / total.clamp_min(1e-12), torch.ones_like(total))


def dice_at_threshold(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Sørensen–Dice of both maps binarised at ``threshold``; both empty counts as 1."""
    return _dice((_flat(pred) >= threshold).float(), (_flat(target) >= threshold).float())


def both_empty(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    return ((_flat(pred) >= threshold).sum(1) == 0) & ((_flat(target) >= threshold).sum(1) == 0)


def ranking(flat: torch.Tensor) -> torch.Tensor:
    """Pixel indices of each row of ``flat`` [N, P], highest first, by values rounded to 1e-4 with
    ties broken by position: a map computed in a batch of another size (another DDP rank's)
    differs by ~1e-7, which must not reorder near-equal pixels (topk's tie order also depends on
    the batch)."""
    return flat.round(decimals=4).sort(dim=1, descending=True, stable=True).indices


def top_area_mask(maps: torch.Tensor, area: float) -> torch.Tensor:
    """Binary mask of each map's top ``area`` share of pixels (ties broken by position)."""
    flat = _flat(maps)
    k = max(1, int(round(area * flat.shape[1])))
    idx = ranking(flat)[:, :k]
    return torch.zeros_like(flat).scatter_(1, idx, 1.0).view_as(maps)


def dice_matched_area(pred: torch.Tensor, target: torch.Tensor, area: float = 0.2) -> torch.Tensor:
    """Dice with each map binarised at its own top ``area`` of pixels: immune to brightness."""
    return _dice(_flat(top_area_mask(pred, area)), _flat(top_area_mask(target, area)))


def soft_dice(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """2·Σpt / (Σp² + Σt²) on the raw maps: 1 for identical maps, 1 when both are all zero."""
    p, t = _flat(pred), _flat(target)
    denom = (p * p).sum(1) + (t * t).sum(1)
    return torch.where(denom > 0, 2 * (p * t).sum(1) / denom.clamp_min(1e-12), torch.ones_like(denom))


def pearson(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson correlation over pixels; 0 where either map is constant."""
    p, t = _flat(pred), _flat(target)
    p, t = p - p.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    denom = p.norm(dim=1) * t.norm(dim=1)
    return torch.where(denom > 0, (p * t).sum(1) / denom.clamp_min(1e-12), torch.zeros_like(denom))


def iou_at_threshold(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Jaccard index of both maps binarised at ``threshold``; both empty counts as 1."""
    a, b = (_flat(pred) >= threshold).float(), (_flat(target) >= threshold).float()
    inter, union = (a * b).sum(1), ((a + b) > 0).float().sum(1)
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def spearman(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image Spearman rank correlation over pixels (torchmetrics: tied pixels share their mean
    rank); 0 where either map is constant."""
    p, t = _flat(pred), _flat(target)
    rho = spearman_corrcoef(p.T.contiguous(), t.T.contiguous()) if len(p) > 1 else spearman_corrcoef(p[0], t[0])[None]
    constant = (p.amax(1) == p.amin(1)) | (t.amax(1) == t.amin(1))
    return torch.where(constant | rho.isnan(), torch.zeros_like(rho), rho)


def mean_absolute_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (_flat(pred) - _flat(target)).abs().mean(1)


AGREEMENT_METRICS = {
    "dice": dice_at_threshold,
    "dice_matched_area": dice_matched_area,
    "soft_dice": soft_dice,
    "iou": iou_at_threshold,
    "pearson": pearson,
    "spearman": spearman,
    "mae": mean_absolute_error,
}
