"""The explanation methods that evaluation scores: one registry, from which ``results.json``,
``results.md``, the overlay figure and logger panels all derive. Adding a method is one
:func:`register` call; its function maps (the evaluator, a test batch of combination ``combo``)
to heatmaps [B, S, S] in [0, 1]. ``ev.classifiers[combo]`` is that combination's classifier and
``ev.target_modules[combo]`` its target conv layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from cgmagan import linear_baseline
from cgmagan.cam import normalize_maps
from cgmagan.cam.package import PACKAGE_CAMS, package_cam
from cgmagan.cam.scorecam import score_cam

if TYPE_CHECKING:
    from cgmagan.models.evaluation_module import ExplanationEvaluator

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ExplanationMethod:
    name: str
    description: str
    explain: Callable[[ExplanationEvaluator, Batch, int], torch.Tensor]


METHODS: dict[str, ExplanationMethod] = {}
REFERENCE_METHOD = "gradcam"  # what every method is compared with (agreement, Win %)
# the baselines that need no training (README): what the GAN has to beat to be worth training
NO_TRAINING_BASELINES = ("last_cgma", "penultimate_gradcam", "mean_train_target", "centred_gaussian")


def register(method: ExplanationMethod) -> ExplanationMethod:
    METHODS[method.name] = method
    return method


def select_methods(names: list[str] | None) -> list[ExplanationMethod]:
    """The named methods in the given order; all registered ones when ``names`` is empty."""
    return [METHODS[n] for n in names] if names else list(METHODS.values())


def scored_method_names(cfg) -> list[str]:
    """What a job scores: ``evaluate.methods`` (null: every registered method), or
    ``evaluate.methods_other_seeds`` where set in a job whose GAN seed is not ``classifier.seed``. GAN
    seeds that share the classifiers, CGMAs and test images share every map but the GAN's, so the job of
    the classifiers' own seed scoring those is enough: in the others their scores would only repeat."""
    ev = cfg.evaluate
    others = ev.get("methods_other_seeds")
    names = others if scores_fewer(others, cfg.seed, cfg.classifier.seed) else ev.methods
    return list(names) if names else list(METHODS)


def scores_fewer(methods_other_seeds, seed, classifier_seed) -> bool:
    """Whether a job scores ``evaluate.methods_other_seeds`` instead of ``evaluate.methods``."""
    return methods_other_seeds is not None and seed != classifier_seed


def _same_for_every_image(batch: Batch, heatmap: torch.Tensor) -> torch.Tensor:
    return heatmap.expand(len(batch["target"]), -1, -1)


register(ExplanationMethod(
    "gradcam", "Grad-CAM of the target layer: the map the GAN learns to draw",
    lambda ev, b, c: b["target"],
))  # fmt: skip
register(ExplanationMethod(
    "gan", "the conditional GAN's heatmap from the image and its CGMAs",
    lambda ev, b, c: ev.gan(b["image"], b["cgma"]),
))  # fmt: skip
register(ExplanationMethod(
    "last_cgma", "the last CGMA (the mean of every selected layer's Grad-CAM), min-max normalised",
    lambda ev, b, c: normalize_maps(b["cgma"][:, -1]),
))  # fmt: skip
register(ExplanationMethod(
    "penultimate_gradcam", "Grad-CAM of the conv before the target on the main path (not a residual shortcut)",
    lambda ev, b, c: b["penultimate"],
))  # fmt: skip
register(ExplanationMethod(
    "linear_cgma", "the target as one linear function of the K CGMAs plus a bias (K + 1 weights for every pixel), "
    "fit by least squares on the GAN's training data: a learned baseline without a GAN",
    lambda ev, b, c: linear_baseline.predict(ev.linear_weights, b["cgma"]),
))  # fmt: skip
register(ExplanationMethod(
    "mean_train_target", "the mean Grad-CAM target over the GAN's training data, the same map for every image",
    lambda ev, b, c: _same_for_every_image(b, ev.mean_train_target),
))  # fmt: skip
register(ExplanationMethod(
    "centred_gaussian", "a centred Gaussian, sigma = evaluate.gaussian_sigma of the side",
    lambda ev, b, c: _same_for_every_image(b, ev.centred_gaussian),
))  # fmt: skip


def _from_package(name: str):
    """The ``grad-cam`` package's method on the classifier's input, at the target layer."""

    def explain(ev: ExplanationEvaluator, batch: Batch, combo: int) -> torch.Tensor:
        return package_cam(PACKAGE_CAMS[name], ev.classifiers[combo], ev.target_modules[combo], batch["input"],
                           batch["pred"], batch["target"].shape[-2:])  # fmt: skip

    return explain


register(ExplanationMethod(
    "gradcam_pp", "Grad-CAM++ (grad-cam package) of the target layer", _from_package("gradcam_pp"),
))  # fmt: skip
register(ExplanationMethod(
    "layercam", "LayerCAM (grad-cam package) of the target layer", _from_package("layercam"),
))  # fmt: skip
register(ExplanationMethod(
    "hirescam", "HiResCAM (grad-cam package) of the target layer", _from_package("hirescam"),
))  # fmt: skip
register(ExplanationMethod(
    "scorecam", "Score-CAM of the target layer (batched; equals the grad-cam package's ScoreCAM)",
    lambda ev, b, c: score_cam(ev.classifiers[c], ev.target_modules[c], b["input"], b["pred"], b["target"].shape[-2:]),
))  # fmt: skip
