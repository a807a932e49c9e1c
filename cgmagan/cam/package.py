"""CAM methods of the ``grad-cam`` package (pytorch-grad-cam) as baselines beside our Grad-CAM:
the package computes each method's map at the layer's resolution; the resize to S x S and the
min-max normalisation are ours, so every method is post-processed as the target Grad-CAM is."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from cgmagan.cam.gradcam import _no_inplace_activations, normalize_maps

PACKAGE_CAMS: dict[str, type[BaseCAM]] = {
    "gradcam": GradCAM,
    "gradcam_pp": GradCAMPlusPlus,
    "layercam": LayerCAM,
    "hirescam": HiResCAM,
}


def package_cam(
    method: type[BaseCAM], model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: torch.Tensor, size
) -> torch.Tensor:
    """``method``'s map of ``layer`` for class ``classes[i]`` of image ``x[i]``, ReLU'd, resized
    bilinearly to ``size`` and min-max normalised per image: [B, S, S] on ``x``'s device.

    In-place activations are switched off meanwhile (the package keeps a view of the layer's
    output that an in-place ReLU would overwrite on the CPU but not on a GPU).
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    with torch.enable_grad(), _no_inplace_activations(model), method(model=model, target_layers=[layer]) as cam:
        inputs = x.detach().requires_grad_(True)  # the classifier is frozen: the graph starts at the input
        logits = cam.activations_and_grads(inputs)
        if cam.uses_gradients:
            sum(t(o) for t, o in zip(targets, logits)).backward()
        grads = cam.activations_and_grads.gradients
        raw = cam.get_cam_image(inputs, layer, targets, cam.activations_and_grads.activations[0].numpy(),
                                grads[0].numpy() if grads else None, eigen_smooth=False)  # fmt: skip
    raw = torch.from_numpy(np.maximum(raw, 0)).float().to(x.device)
    return normalize_maps(F.interpolate(raw[:, None], size=size, mode="bilinear", align_corners=False)[:, 0])
