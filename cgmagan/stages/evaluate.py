"""Stage evaluate: GAN maps vs Grad-CAM and the no-training baselines, on every combination."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from cgmagan.cam import normalize_maps
from cgmagan.combinations import Combination
from cgmagan.data.cgma_datamodule import CGMADataModule
from cgmagan.metrics import faithfulness as fa
from cgmagan.metrics.agreement import AGREEMENT_METRICS, both_empty, top_area_mask
from cgmagan.models.gan_module import CGMAGAN

log = logging.getLogger(__name__)

ZERO_TARGET_FLAG = 0.05


def centred_gaussian(size: int, sigma: float) -> torch.Tensor:
    """Peak-1 Gaussian at the centre, sigma as a share of the side."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2 * (sigma * size) ** 2))
    return g / g.max()


def _tensor(a, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.array(a)).to(dtype)  # a copy: memory maps are read-only


@torch.no_grad()
def generate(gan: CGMAGAN, images: torch.Tensor, cgmas: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    gan.eval()
    return torch.cat([gan(images[i : i + batch_size], cgmas[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def mean_training_target(dm: CGMADataModule) -> torch.Tensor:
    """The mean target over the GAN's training data (all training combinations pooled)."""
    total, count = None, 0
    for name in dm.train_names:
        targets = dm.arrays(name, "train")["target"]
        for part in targets.parts:
            s = _tensor(part).sum(0)
            total = s if total is None else total + s
            count += len(part)
    return total / max(1, count)


def localization(maps: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """Pointing game (the map's maximum inside the object) and share of map energy inside it."""
    flat, m = maps.flatten(1), masks.flatten(1).float()
    peak = flat.argmax(1)
    hit = m.gather(1, peak[:, None])[:, 0] * (flat.amax(1) > 0)
    energy = (flat * m).sum(1) / flat.sum(1).clamp_min(1e-12)
    return {"pointing_game": float(100 * hit.mean()), "energy_in_mask": float(100 * energy.mean())}


def evaluate_combination(
    combo: Combination, classifier: nn.Module, accuracy: float, gan: CGMAGAN, dm: CGMADataModule,
    mean_target: torch.Tensor, cfg,
) -> tuple[dict, dict[str, torch.Tensor]]:  # fmt: skip
    arrays = dm.arrays(combo.name, "test")
    n = min(len(arrays["target"]), int(cfg.evaluate.max_images))
    take = {k: v.rows(0, n) for k, v in arrays.items()}
    target, images = _tensor(take["target"]), _tensor(take["image"])
    size = target.shape[-1]
    methods = {
        "gradcam": target,
        "gan": generate(gan, images, _tensor(take["cgma"])),
        "last_cgma": normalize_maps(_tensor(take["cgma"][:, -1])),
        "penultimate_gradcam": _tensor(take["penultimate"]),
        "mean_train_target": mean_target.expand(n, -1, -1),
        "centred_gaussian": centred_gaussian(size, cfg.evaluate.gaussian_sigma).expand(n, -1, -1),
    }

    # faithfulness needs the classifier's own input: the test images at full resolution
    test = dm.sources[combo.name].data.dataset("test")
    x = torch.stack([test[i][0] for i in range(n)])
    classes = _tensor(take["pred"], torch.long)
    y = fa.class_probability(classifier, x, classes)
    n_auc = min(n, int(cfg.evaluate.auc_images))

    results: dict[str, dict] = {}
    drops = {}
    for name, maps in methods.items():
        row = {k: float(f(maps, target).mean()) for k, f in AGREEMENT_METRICS.items()}
        row["both_empty"] = int(both_empty(maps, target).sum())
        full = fa.resize_maps(maps, tuple(x.shape[-2:]))
        o = fa.class_probability(classifier, fa.explanation_image(x, full), classes)
        drops[name] = fa.relative_drop(y, o)
        row["average_drop"] = fa.average_drop(y, o)
        row["increase_in_confidence"] = fa.increase_in_confidence(y, o)
        o_area = fa.class_probability(classifier, fa.explanation_image(x, top_area_mask(full, cfg.evaluate.area)), classes)
        row["average_drop_matched_area"] = fa.average_drop(y, o_area)
        if n_auc > 0:
            dele, ins = fa.deletion_insertion_auc(classifier, x[:n_auc], full[:n_auc], classes[:n_auc], cfg.evaluate.deletion_steps)
            row["deletion_auc"], row["insertion_auc"] = float(dele.mean()), float(ins.mean())
        if "mask" in take:
            row.update(localization(maps, _tensor(take["mask"])))
        results[name] = row
    for name, row in results.items():
        row["win_vs_gradcam"] = fa.win_percent(drops[name], drops["gradcam"])

    zero = sum(dm.manifests[(combo.name, s)]["zero_targets"] for s in ("train", "val", "test"))
    total = sum(dm.manifests[(combo.name, s)]["count"] for s in ("train", "val", "test"))
    share = zero / max(1, total)
    chance = 1 / dm.sources[combo.name].data.num_classes
    entry = {
        "dataset": combo.dataset,
        "backbone": combo.backbone,
        "seen": combo.seen,
        "kind": combo.kind,
        "classifier_accuracy": accuracy,
        "zero_target_share": share,
        "near_chance": accuracy < 2 * chance,
        "flagged": share > ZERO_TARGET_FLAG or accuracy < 2 * chance,
        "n_test": n,
        "n_auc": n_auc,
        "num_layers": dm.manifests[(combo.name, "test")]["num_layers"],
        "methods": results,
    }
    if entry["flagged"]:
        log.warning("%s: classifier accuracy %.1f %% (chance %.1f %%), %.1f %% all-zero targets: its explanations "
                    "mean little", combo.name, 100 * accuracy, 100 * chance, 100 * share)  # fmt: skip
    return entry, {"image": images, **methods}
