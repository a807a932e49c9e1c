"""Cumulative Grad-CAM averages (CGMA): running means of per-layer maps (design.md)."""

from __future__ import annotations

import math

import torch

from cgmagan.errors import ConfigError


def cgma_settings(cfg) -> dict:
    """The settings that decide what the K condition maps are, from a ``cgma`` config or a GAN's
    description: one place for every caller of :func:`cgma` and for the cache key. ``cumulative``
    defaults to True: checkpoints written before the switch existed used running means."""
    return {"k": int(cfg["k"]), "order": cfg["order"], "exclude_target_layer": bool(cfg["exclude_target_layer"]),
            "cumulative": bool(cfg.get("cumulative", True))}  # fmt: skip


def cgma_positions(num_layers: int, k: int) -> list[int]:
    """1-based positions j_k = round(1 + (k-1)(L-1)/(K-1)), rounding halves up."""
    if num_layers < 1 or k < 1:
        raise ValueError(f"need at least one layer and one CGMA, got L={num_layers}, K={k}")
    if k == 1:
        return [num_layers]
    return [math.floor(1 + i * (num_layers - 1) / (k - 1) + 0.5) for i in range(k)]


def cgma(
    cams: torch.Tensor, k: int = 8, order: str = "forward", exclude_target_layer: bool = False, cumulative: bool = True
) -> torch.Tensor:
    """K cumulative averages of ``cams`` [B, L, S, S] -> [B, K, S, S].

    ``order="forward"`` accumulates from the first layer (C_j = mean(G_1..G_j)); ``"backward"``
    from the deepest, as the original code did, so its first CGMA is the target layer alone.
    ``exclude_target_layer`` drops the last layer (the target) before averaging.
    ``cumulative=False`` keeps the single layers' Grad-CAMs G_j at the same positions instead of
    their running means (the ablation "CGMA vs single-layer conditions").
    """
    if exclude_target_layer:
        cams = cams[:, :-1]
    if order == "backward":
        cams = cams.flip(1)
    elif order != "forward":
        raise ConfigError(f"cgma order must be 'forward' or 'backward', got {order!r}")
    num_layers = cams.shape[1]
    index = torch.tensor([j - 1 for j in cgma_positions(num_layers, k)], device=cams.device)
    if not cumulative:
        return cams.index_select(1, index)
    counts = torch.arange(1, num_layers + 1, device=cams.device, dtype=cams.dtype)
    running = cams.cumsum(1) / counts.view(1, -1, 1, 1)
    return running.index_select(1, index)
