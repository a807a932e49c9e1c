"""Grad-CAM at many conv layers from one forward and one backward pass.

Definitions follow design.md: vanilla Grad-CAM weights (spatial mean of dy_c/dA), ReLU,
bilinear resize to S x S, per-map min-max normalisation, constant maps set to zero.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from cgmagan.errors import ConfigError

DEGENERATE_RTOL = 1e-5


def _trace_convs(model: nn.Module, example_input: torch.Tensor) -> list[tuple[str, nn.Conv2d, tuple[int, int]]]:
    """Conv layers in the order a probe forward pass runs them, with their output sizes."""
    name_of = {m: n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    executed: list[tuple[str, nn.Conv2d, tuple[int, int]]] = []
    seen: set[nn.Module] = set()

    def record(module, _inputs, output):
        if module not in seen:
            seen.add(module)
            executed.append((name_of[module], module, tuple(output.shape[-2:])))

    handles = [m.register_forward_hook(record) for m in name_of]
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    return executed


def conv_layers(
    model: nn.Module, example_input: torch.Tensor | None = None, min_size: int = 2
) -> list[tuple[str, nn.Conv2d]]:
    """The model's Conv2d layers as ``(name, module)`` in forward execution order.

    With ``example_input`` (one batch, any size >= 1) the order is observed in a probe forward
    pass and layers whose output is smaller than ``min_size`` x ``min_size`` (1x1 squeeze-excite
    convs, say) are left out: their Grad-CAM has no spatial information. Without it, the
    registration order is returned and nothing is filtered.
    """
    if example_input is None:
        return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return [(n, m) for n, m, hw in _trace_convs(model, example_input) if min(hw) >= min_size]


@contextmanager
def _no_inplace_activations(model: nn.Module):
    """Turn off ``inplace`` flags (``ReLU(inplace=True)`` in VGG, ResNet, MobileNet) so the
    saved conv outputs keep the values they had when they left the layer."""
    flipped = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for m in flipped:
        m.inplace = False
    try:
        yield
    finally:
        for m in flipped:
            m.inplace = True


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map over its last two dims to [0, 1]; constant maps become 0.

    A map is constant when max <= 0 or max - min <= 1e-5 * max (design.md).
    """
    flat = maps.flatten(-2)
    lo = flat.amin(-1, keepdim=True)
    hi = flat.amax(-1, keepdim=True)
    span = hi - lo
    degenerate = (hi <= 0) | (span <= DEGENERATE_RTOL * hi)
    out = torch.where(degenerate, torch.zeros_like(flat), (flat - lo) / span.clamp_min(1e-12))
    return out.view_as(maps)


def is_zero_map(maps: torch.Tensor) -> torch.Tensor:
    """True where a map (over its last two dims) is all zero."""
    return maps.flatten(-2).amax(-1) <= 0


def _cams_from_activations(
    activations: list[torch.Tensor], grads: list[torch.Tensor], size: tuple[int, int]
) -> torch.Tensor:
    """ReLU(sum_k alpha_k A^k) per layer, resized to ``size``; layers of one resolution are
    resized together in one interpolate call. Returns [B, L, S, S] before normalisation."""
    raw = [
        torch.relu(torch.einsum("bc,bchw->bhw", g.mean((2, 3)), a))
        for a, g in zip(activations, grads, strict=True)
    ]
    by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, cam in enumerate(raw):
        by_size[tuple(cam.shape[-2:])].append(i)
    batch = raw[0].shape[0]
    out = raw[0].new_empty(batch, len(raw), *size)
    for hw, idx in by_size.items():
        stacked = torch.stack([raw[i] for i in idx], 1)  # [B, n, h, w]
        if hw != size:
            stacked = F.interpolate(stacked, size=size, mode="bilinear", align_corners=False)
        out[:, idx] = stacked
    return out


def multilayer_gradcam(
    model: nn.Module,
    x: torch.Tensor,
    layers,
    target: torch.Tensor | int | None = None,
    size: int | tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM of every layer in ``layers`` from ONE forward and ONE backward pass.

    Args:
        model: the classifier, in the mode the caller wants (eval for explanations).
        x: input batch [B, C, H, W].
        layers: ``(name, module)`` pairs (as from :func:`conv_layers`) or modules.
        target: class per image ([B] tensor or an int); the predicted class when None.
        size: output map size S (int or (H, W)); the input size when None.

    Returns:
        ``(cams, logits)``: cams [B, L, S, S] in the order of ``layers``, in [0, 1] (constant maps are zero), logits [B, C]
        detached.
    """
    modules = [m[1] if isinstance(m, tuple) else m for m in layers]
    if not modules:
        raise ValueError("multilayer_gradcam needs at least one layer")
    if size is None:
        size = tuple(x.shape[-2:])
    elif isinstance(size, int):
        size = (size, size)

    saved: dict[int, torch.Tensor] = {}  # by position in ``modules``, whatever order they run in
    calls = [0]

    def saver(i: int):
        def save(module, _inputs, output):
            # Parameters need no gradient: making the first output to run a graph leaf records
            # exactly the graph dy/dA needs, so backward skips every weight gradient.
            if not saved and not output.requires_grad:
                output = output.detach().requires_grad_(True)
            calls[0] += 1
            saved[i] = output
            return output

        return save

    handles = [m.register_forward_hook(saver(i)) for i, m in enumerate(modules)]
    try:
        with torch.enable_grad(), _no_inplace_activations(model):
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    if calls[0] != len(modules) or len(saved) != len(modules):
        raise RuntimeError(
            f"{len(modules)} layers were requested but {calls[0]} outputs were seen in the "
            "forward pass: a layer is unused or called more than once; pass the layers from "
            "conv_layers(model, example_input)."
        )
    if target is None:
        target = logits.argmax(1)
    elif isinstance(target, int):
        target = torch.full((x.shape[0],), target, dtype=torch.long, device=x.device)
    score = logits.gather(1, target.view(-1, 1).to(logits.device)).sum()
    activations = [saved[i] for i in range(len(modules))]
    grads = torch.autograd.grad(score, activations)
    with torch.no_grad():
        cams = _cams_from_activations([a.detach() for a in activations], list(grads), size)
        cams = normalize_maps(cams)
    return cams, logits.detach()


SHORTCUT_NAMES = ("downsample", "shortcut")  # residual projections: beside the main path, not on it


def _is_shortcut(name: str) -> bool:
    return any(part in SHORTCUT_NAMES for part in name.split("."))


def penultimate_position(names: list[str]) -> int:
    """Index, among the selected layers (the target last), of the conv before the target on the
    main path: the same rule as for the target, so a ResNet's shortcut projection, which runs after
    its block's last conv, is not the "second-to-last layer"."""
    main = [i for i, name in enumerate(names[:-1]) if not _is_shortcut(name)]
    return main[-1] if main else len(names) - 2


def _find_target(traced: list[tuple[str, nn.Conv2d, tuple[int, int]]], target: str | None):
    if target is None:  # the last conv of the main path (a ResNet block runs its projection after conv2)
        main = [t for t in traced if not _is_shortcut(t[0])]
        return main[-1] if main else traced[-1]
    found = [t for t in traced if t[0] == target or t[0].endswith("." + target)]
    if len(found) != 1:
        last = ", ".join(n for n, _, _ in traced[-6:])
        raise ConfigError(
            f"target layer {target!r} names {len(found)} of the classifier's conv layers; give the module name of "
            f"one conv (backbone.target_layer), e.g. one of the last ones: {last}"
        )
    return found[0]


def select_layers(
    model: nn.Module, example_input: torch.Tensor, target: str | None = None, min_target_size: int = 4
) -> list[tuple[str, nn.Conv2d]]:
    """Conv layers for Grad-CAM: those with >= 2x2 outputs in forward order, the target last.

    The target is the conv named ``target`` (a module name, or its end after a dot), by default
    the last conv of the main path: residual shortcut projections (``downsample``, ``shortcut``)
    are never the target. Its output must be at least ``min_target_size`` x ``min_target_size``,
    or every target map is rounding noise.
    """
    traced = _trace_convs(model, example_input)
    if not traced:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer to explain")
    chosen = _find_target(traced, target)
    name, module, (h, w) = chosen
    if min(h, w) < min_target_size:
        raise ConfigError(
            f"the target conv layer ({name}) outputs {h}x{w} at input "
            f"{tuple(example_input.shape[-2:])}: the Grad-CAM target needs at least "
            f"{min_target_size}x{min_target_size}, or every target map is rounding noise. Raise the "
            "classifier input size (dataset.input_size) or pick a backbone that downsamples less."
        )
    return [(n, m) for n, m, hw in traced if min(hw) >= 2 and m is not module] + [(name, module)]
