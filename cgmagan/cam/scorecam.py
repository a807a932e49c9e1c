"""Score-CAM (Wang et al. 2020), batched. The ``grad-cam`` package's ScoreCAM runs the masked
inputs image by image, 16 at a time, and reads every score back with ``.item()``; this one runs
them in large batches of (image, channel) pairs, each built only when its batch runs, so that
memory stays bounded for 2,048-channel layers at 256x256. Same definition (tested against the
package): each channel's activation map, upsampled to the input and min-max normalised, masks the
image; the softmax over channels of the class logits of the masked images weights the channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cgmagan.cam.gradcam import normalize_maps


@torch.no_grad()
def layer_output(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer``'s output for ``x``, [B, C, h, w] (a copy: an in-place activation after it cannot change it)."""
    captured = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out.detach().clone()))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[0]


@torch.no_grad()
def score_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: torch.Tensor, size,
              batch_images: int = 512) -> torch.Tensor:  # fmt: skip
    """Score-CAM of ``layer`` for class ``classes[i]`` of image ``x[i]``, ReLU'd, resized bilinearly
    to ``size`` and min-max normalised per image (as every method here): [B, S, S]."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    acts = layer_output(model, layer, x)  # [B, C, h, w]
    b, c = acts.shape[:2]
    scores = torch.empty(b * c, device=x.device)
    for first in range(0, b * c, batch_images):
        pairs = torch.arange(first, min(first + batch_images, b * c), device=x.device)
        image, channel = pairs // c, pairs % c
        mask = F.interpolate(acts[image, channel][:, None], size=x.shape[-2:], mode="bilinear", align_corners=True)
        low = mask.amin((2, 3), keepdim=True)
        high = mask.amax((2, 3), keepdim=True)
        mask = (mask - low) / (high - low + 1e-8)  # [n, 1, H, W] in [0, 1]
        scores[first : first + len(pairs)] = model(x[image] * mask).gather(1, classes[image, None])[:, 0]
    weights = scores.view(b, c).softmax(1)
    cam = (weights[:, :, None, None] * acts).sum(1).clamp_min(0)  # [B, h, w]
    return normalize_maps(F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0])
