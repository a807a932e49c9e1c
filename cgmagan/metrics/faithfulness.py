"""Faithfulness of a heatmap to the classifier (Chattopadhyay et al. 2018; RISE deletion/insertion).

All functions take images in pixel space [0, 1] (the classifier normalises internally) and maps
at the image's resolution, [N, H, W] in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from cgmagan.metrics.agreement import ranking


@torch.no_grad()
def class_probability(model: nn.Module, images: torch.Tensor, classes: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    out = [
        model(images[i : i + batch_size]).softmax(1).gather(1, classes[i : i + batch_size, None])[:, 0]
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out)


def explanation_image(images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """E = x ⊙ M, the map broadcast over channels."""
    return images * maps[:, None]


def relative_drop(y: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """r = (Y - O) / Y per image."""
    return (y - o) / y.clamp_min(1e-12)


# Per image; their means over the test images are the Grad-CAM++ paper's scores.


def drop(y: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """100 · max(0, Y - O) / Y: its mean is Average Drop %."""
    return 100 * relative_drop(y, o).clamp_min(0)


def increase(y: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """100 · [O > Y]: its mean is Increase in Confidence %."""
    return 100 * (o > y).float()


def win(r_a: torch.Tensor, r_b: torch.Tensor) -> torch.Tensor:
    """100 · ([r_A < r_B] + ½ [r_A = r_B]): its mean is A's Win % over B; A's and B's sum to 100."""
    return 100 * ((r_a < r_b).float() + 0.5 * (r_a == r_b).float())


@torch.no_grad()
def deletion_insertion_auc(
    model: nn.Module, images: torch.Tensor, maps: torch.Tensor, classes: torch.Tensor, steps: int = 20,
    batch_images: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (deletion AUC, insertion AUC) of the class probability (RISE, Petsiuk et al.).

    Pixels are ranked by the map; deletion sets the top fraction to zero, insertion reveals it on a
    copy blurred by a Gaussian (kernel 11, sigma 5), RISE's substrates; ``steps`` + 1 points from
    0 to 100 %, trapezoid rule over the fraction.
    """
    n, _, h, w = images.shape
    order = ranking(maps.reshape(n, -1))
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(h * w, device=order.device).expand(n, -1)).view(n, 1, h, w)
    blurred = gaussian_blur(images, kernel_size=[11, 11], sigma=[5.0, 5.0])  # RISE's insertion substrate
    # several points of both curves per forward (the small classifiers' cost is per call), at most
    # ~``batch_images`` images at a time so that large images stay within memory
    thresholds = torch.round(torch.arange(steps + 1, dtype=torch.float64) / steps * h * w).to(rank.dtype).tolist()
    per_call = max(1, batch_images // (2 * n))
    deletion, insertion = [], []
    for first in range(0, steps + 1, per_call):
        shown = torch.stack([(rank < t).to(images.dtype) for t in thresholds[first : first + per_call]])  # [s, N, 1, H, W]
        curves = torch.cat([images * (1 - shown), blurred * (1 - shown) + images * shown])
        probs = class_probability(model, curves.flatten(0, 1), classes.repeat(len(curves))).view(2, len(shown), n)
        deletion.append(probs[0])
        insertion.append(probs[1])
    deletion, insertion = torch.cat(deletion).T, torch.cat(insertion).T  # [N, steps + 1]
    x = torch.linspace(0, 1, steps + 1, device=images.device)
    return torch.trapezoid(deletion, x, dim=1), torch.trapezoid(insertion, x, dim=1)


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[N, S, S] -> [N, H, W] bilinear, clamped to [0, 1]."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)


def removal_order(values: np.ndarray, seed: int) -> np.ndarray:
    """Pixel indices of one map, most relevant first; pixels of equal value in a random order drawn
    from ``seed`` (as Rong et al.'s code breaks ties with noise), never by position, which would
    take a band of a tied plateau and bias the imputation."""
    tie_break = np.random.default_rng(seed).random(values.size)
    return np.lexsort((tie_break, -values.ravel()))


def road(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, classes: torch.Tensor, percentiles: list[int],
         seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Per-image ROAD (Rong et al. 2022): the change of the class probability when p % of the
    pixels, exactly round(p · H · W) of them for each p in ``percentiles``, are replaced by the
    ``grad-cam`` package's noisy linear imputation (:mod:`cgmagan.metrics.imputation`); most relevant
    first (MoRF, lower is better) and least relevant first (LeRF, higher is better), averaged over
    ``percentiles``.

    The package removes every pixel at or above a percentile's value, so a tied plateau (Grad-CAM's
    ReLU zeros) goes at once; here the count is exact and ties are broken by noise seeded by
    ``seeds[i]``, which also seeds image i's imputation noise, so the scores depend neither on
    batching nor on how DDP splits the images. Maps are rounded to 1e-4 first: a map computed in
    another batch (another rank's) differs by ~1e-7, which must not reorder near-equal pixels."""
    from cgmagan.metrics.imputation import NoisyLinearImputation  # grad-cam's imputer, its system built faster

    imputer = NoisyLinearImputation()
    n, _, h, w = images.shape
    y = class_probability(model, images, classes)
    scores = []
    for i in range(n):
        x, seed = images[i].detach().float().cpu(), int(seeds[i])
        order = removal_order(maps[i].float().round(decimals=4).cpu().numpy(), seed)
        imputed = []
        for ranked in (order, order[::-1]):  # MoRF, LeRF
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # the imputation noise, drawn percentile after percentile
                for p in percentiles:
                    keep = torch.ones(h * w, device="cpu")  # the package imputes on the host
                    keep[torch.as_tensor(ranked[: int(np.floor(p / 100 * h * w + 0.5))].copy(), device="cpu")] = 0
                    imputed.append(imputer(x, keep.view(h, w)))
        o = class_probability(model, torch.stack(imputed).to(images.device, images.dtype), classes[i].repeat(len(imputed)))
        scores.append((o - y[i]).view(2, len(percentiles)).mean(1))
    out = torch.stack(scores) if scores else images.new_zeros(0, 2)
    return out[:, 0], out[:, 1]
