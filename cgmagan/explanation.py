"""``cgmagan.explain``: explanations of a batch inside your own code, on the model's device.

    from cgmagan import explain
    out = explain(classifier, images, gan=gan)          # images [B, C, H, W] in what the model takes
    out.gan, out.gradcam, out.cgmas, out.predicted, out.probability

One forward and one backward pass give the Grad-CAM of every conv layer (the target layer's is
``gradcam``), their cumulative averages (``cgmas``) and, with a trained GAN, its heatmap from the
image and the CGMAs, built exactly as the CGMA cache builds the GAN's training inputs.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cgmagan.cam import cgma, multilayer_gradcam, select_layers
from cgmagan.data.cgma_datamodule import to_rgb
from cgmagan.models.gan_module import CGMAGAN


@dataclass
class Explanation:
    """One batch's explanations; maps [B, S, S] (``cgmas`` [B, K, S, S]) in [0, 1] at ``map_size``."""

    predicted: torch.Tensor  # [B] the model's class
    probability: torch.Tensor  # [B] its softmax probability
    target: torch.Tensor  # [B] the class explained (``targets``, or the predicted one)
    gradcam: torch.Tensor  # the target layer's Grad-CAM
    cgmas: torch.Tensor
    gan: torch.Tensor | None  # the GAN's heatmap, when a GAN was given
    layers: list[str]  # the conv layers explained, the target last


def gan_settings(gan: CGMAGAN) -> dict:
    """Map size and CGMA settings a GAN was trained with (from its checkpoint's description)."""
    description = gan.hparams.get("description") or {}
    if not description:
        raise ValueError("this GAN carries no description of its inputs (map size, cgma.k, order): "
                         "pass map_size, k and order to explain()")  # fmt: skip
    return {"map_size": description["map_size"], **description["cgma"]}


def _modes(module: nn.Module) -> list[tuple[nn.Module, bool]]:
    return [(m, m.training) for m in module.modules()]


@contextmanager
def _evaluated(module: nn.Module):
    """``module`` in eval mode meanwhile, every submodule's own mode given back afterwards (a
    train-mode model may hold frozen BatchNorm layers in eval mode)."""
    modes = _modes(module)
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def explain(
    model: nn.Module,
    images: torch.Tensor,
    gan: CGMAGAN | None = None,
    targets: torch.Tensor | list[int] | int | None = None,
    *,
    target_layer: str | None = None,
    map_size: int | None = None,
    k: int | None = None,
    order: str | None = None,
    exclude_target_layer: bool | None = None,
    cumulative: bool | None = None,
) -> Explanation:
    """Explain ``model``'s decision on ``images`` (moved to the model's device); the maps come back there.

    ``targets``: the class to explain per image (a [B] tensor, a list, or one int for all); the
    predicted class when None. ``target_layer``: a conv module name (default: the last conv of the
    main path, as the pipeline picks it). With a ``gan``, ``map_size``, ``k``, ``order``,
    ``exclude_target_layer`` and ``cumulative`` default to what it was trained with; without one,
    to the image size, 8 (or fewer layers), forward order, target included, running means.

    The model and the GAN are left exactly as they were: both run in eval mode meanwhile (so
    BatchNorm statistics do not move), each on its own device, and their modes, parameters,
    buffers and gradients are untouched.
    """
    device = next(model.parameters()).device
    images = images.to(device)
    settings = gan_settings(gan) if gan is not None else {}
    size = map_size or settings.get("map_size") or images.shape[-1]
    order = order or settings.get("order", "forward")
    exclude = settings.get("exclude_target_layer", False) if exclude_target_layer is None else exclude_target_layer
    cumulative = settings.get("cumulative", True) if cumulative is None else cumulative
    if isinstance(targets, list):
        targets = torch.tensor(targets, device=device)
    if isinstance(targets, torch.Tensor):
        targets = targets.to(device)

    with _evaluated(model):
        layers = select_layers(model, images[:1], target=target_layer)
        cams, logits = multilayer_gradcam(model, images, layers, target=targets, size=size)
    k = k or settings.get("k") or min(8, len(layers) - exclude)
    probs = logits.softmax(1)
    predicted = probs.argmax(1)
    explained = predicted if targets is None else torch.as_tensor(targets, device=device).expand_as(predicted)
    cgmas = cgma(cams, k, order, exclude, cumulative)
    heatmap = None
    if gan is not None:
        # the GAN's image input exactly as the CGMA cache stores it, on the GAN's own device
        gan_image = F.interpolate(to_rgb(images), size=size, mode="bilinear", align_corners=False).clamp(0, 1)
        gan_device = next((t.device for t in (*gan.parameters(), *gan.buffers())), device)
        with torch.no_grad(), _evaluated(gan):
            heatmap = gan(gan_image.to(gan_device), cgmas.to(gan_device)).to(device)
    return Explanation(predicted, probs.gather(1, predicted[:, None])[:, 0], explained, cams[:, -1], cgmas, heatmap,
                       [name for name, _ in layers])  # fmt: skip
