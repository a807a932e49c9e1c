"""What evaluation reports for every method: the scores, their table columns, and a torchmetrics
``Metric`` that accumulates them per image, so that under DDP each rank scores its share of the
test images and the ranks' sums are reduced before the means are taken."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchmetrics import Metric

from cgmagan.metrics.agreement import AGREEMENT_METRICS


@dataclass(frozen=True)
class Score:
    key: str
    column: str  # "{area}" is replaced by evaluate.area in percent
    fmt: str
    description: str


SCORES = (
    Score("dice", "Dice@0.5", "{:.3f}", "Sørensen–Dice with Grad-CAM, both maps binarised at 0.5 (both empty counts 1)"),
    Score("dice_matched_area", "Dice@{area}%", "{:.3f}", "Dice with each map binarised at its own top {area} % of pixels"),
    Score("soft_dice", "soft Dice", "{:.3f}", "2·Σpt / (Σp² + Σt²) on the raw maps"),
    Score("iou", "IoU@0.5", "{:.3f}", "Jaccard index with Grad-CAM, both maps binarised at 0.5 (both empty counts 1)"),
    Score("pearson", "Pearson", "{:.3f}", "Pearson correlation with Grad-CAM over pixels"),
    Score("spearman", "Spearman", "{:.3f}", "Spearman rank correlation with Grad-CAM over pixels (ties share ranks)"),
    Score("mae", "MAE", "{:.3f}", "mean absolute difference from Grad-CAM"),
    Score("average_drop", "AD %", "{:.1f}", "Average Drop, 100·mean(max(0, Y−O)/Y), O on image ⊙ map (Grad-CAM++; lower is better)"),
    Score("increase_in_confidence", "IC %", "{:.1f}", "Increase in Confidence, 100·mean(O > Y) (Grad-CAM++)"),
    Score("average_drop_matched_area", "AD@{area}% %", "{:.1f}", "Average Drop with a binary mask of the map's top {area} % of pixels (brightness-immune)"),
    Score("average_drop_top50", "AD(50%) %", "{:.1f}", "Average Drop as TAME / L-CAM compute it: image × map on the map's top 50 % of pixels, 0 elsewhere"),
    Score("increase_in_confidence_top50", "IC(50%) %", "{:.1f}", "Increase in Confidence, TAME / L-CAM's top 50 % (the map's values kept)"),
    Score("average_drop_top15", "AD(15%) %", "{:.1f}", "Average Drop as TAME / L-CAM compute it: image × map on the map's top 15 % of pixels, 0 elsewhere"),
    Score("increase_in_confidence_top15", "IC(15%) %", "{:.1f}", "Increase in Confidence, TAME / L-CAM's top 15 % (the map's values kept)"),
    Score("win_vs_gradcam", "Win vs GC %", "{:.1f}", "share of images where the method's drop is below Grad-CAM's (ties ½)"),
    Score("deletion_auc", "Del AUC↓", "{:.3f}", "RISE deletion AUC: top pixels set to 0, {steps} steps"),
    Score("insertion_auc", "Ins AUC↑", "{:.3f}", "RISE insertion AUC: top pixels revealed on a copy blurred by a Gaussian (kernel 11, σ 5), {steps} steps"),
    Score("road_morf", "ROAD MoRF↓", "{:.3f}", "ROAD (Rong et al. 2022): class probability change when exactly p % of the pixels, the most relevant, are replaced by the grad-cam package's noisy linear imputation (ties broken by seeded noise), mean over p in {road}"),
    Score("road_lerf", "ROAD LeRF↑", "{:.3f}", "ROAD, the least relevant p % first, mean over p in {road}"),
    Score("pointing_game", "Pointing %", "{:.1f}", "share of images whose map maximum lies inside the object; an all-zero map is a miss (Quantus counts it a hit)"),
    Score("energy_in_mask", "Energy in mask %", "{:.1f}", "share of the map's total inside the object; an all-zero map has none"),
    Score("randomisation_spearman", "MPRT ρ↓", "{:.3f}", "sanity check: mean Spearman rank correlation with the trained model's map once every conv and linear layer is randomised (Adebayo et al. 2018, cascading; below 0.5 passes)"),
)
AGREEMENT = tuple(AGREEMENT_METRICS)
TOP_AREAS = {"top50": 0.5, "top15": 0.15}  # TAME / L-CAM's AD(50%), AD(15%): the map kept on its top share
FAITHFULNESS = ("average_drop", "increase_in_confidence", "average_drop_matched_area",
                *(f"{m}_{t}" for t in TOP_AREAS for m in ("average_drop", "increase_in_confidence")), "win_vs_gradcam")  # fmt: skip
LOCALIZATION = ("pointing_game", "energy_in_mask")
AUC = ("deletion_auc", "insertion_auc")
ROAD = ("road_morf", "road_lerf")


def per_image_keys(has_masks: bool) -> tuple[str, ...]:
    """Scores that are a mean over every evaluated image (the AUCs cover a subset)."""
    return AGREEMENT + FAITHFULNESS + (LOCALIZATION if has_masks else ())


class ExplanationScores(Metric):
    """Sums of per-image scores [method, score] for one combination; ``compute`` gives the means.

    ``update`` takes per-image values [M, Q, B] for the keys of :func:`per_image_keys`, the
    images where both the map and Grad-CAM are empty at 0.5 [M, B], deletion / insertion AUCs
    [M, 2, A] of the batch's AUC images and ROAD MoRF / LeRF [M, 2, R] of its ROAD images. Sums are float64, so any split across ranks gives the
    same means as one process to within rounding.
    """

    full_state_update = False

    def __init__(self, methods: list[str], has_masks: bool):
        super().__init__()
        self.methods = list(methods)
        self.keys = per_image_keys(has_masks)
        m = len(self.methods)
        self.add_state("sums", torch.zeros(m, len(self.keys), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("both_empty", torch.zeros(m, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("auc_sums", torch.zeros(m, 2, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("auc_images", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("road_sums", torch.zeros(m, 2, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("road_images", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, per_image: torch.Tensor, both_empty: torch.Tensor, auc: torch.Tensor, road: torch.Tensor) -> None:
        self.sums += per_image.double().sum(-1)
        self.both_empty += both_empty.double().sum(-1)
        self.images += per_image.shape[-1]
        self.auc_sums += auc.double().sum(-1)
        self.auc_images += auc.shape[-1]
        self.road_sums += road.double().sum(-1)
        self.road_images += road.shape[-1]

    def compute(self) -> dict:
        """``{"n_images", "n_auc", "n_road", "methods": {method: {score: mean, "both_empty": count}}}``."""
        means = (self.sums / self.images.clamp_min(1)).tolist()
        auc = (self.auc_sums / self.auc_images.clamp_min(1)).tolist()
        road = (self.road_sums / self.road_images.clamp_min(1)).tolist()
        methods = {}
        for i, name in enumerate(self.methods):
            row = dict(zip(self.keys, means[i]))
            row["both_empty"] = int(self.both_empty[i])
            if self.auc_images > 0:
                row.update(zip(AUC, auc[i]))
            if self.road_images > 0:
                row.update(zip(ROAD, road[i]))
            methods[name] = row
        return {"n_images": int(self.images), "n_auc": int(self.auc_images), "n_road": int(self.road_images),
                "methods": methods}  # fmt: skip


class ConditionImportance(Metric):
    """How much the GAN's map depends on each CGMA slot: slot k replaced by zeros, or by another
    test image's slot k (a seeded derangement of the AUC images), for k = 1..K; per slot the mean absolute change of the map and the
    Dice@0.5 of the changed map with Grad-CAM, summed per image and reduced across ranks."""

    full_state_update = False
    REPLACEMENTS = ("zeros", "other_image")

    def __init__(self, num_slots: int):
        super().__init__()
        self.num_slots = num_slots
        self.add_state("sums", torch.zeros(2, num_slots, 2, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, change: torch.Tensor, dice: torch.Tensor) -> None:
        """``change`` and ``dice``: [2 replacements, K slots, B images]."""
        self.sums += torch.stack([change, dice], -1).double().sum(2)
        self.images += change.shape[-1]

    def compute(self) -> dict:
        """``{"n_images", replacement: [{"slot", "mean_abs_change", "dice"} for each slot]}``."""
        means = (self.sums / self.images.clamp_min(1)).tolist()
        out: dict = {"n_images": int(self.images)}
        for r, replacement in enumerate(self.REPLACEMENTS):
            out[replacement] = [{"slot": k + 1, "mean_abs_change": means[r][k][0], "dice": means[r][k][1]}
                                for k in range(self.num_slots)]  # fmt: skip
        return out
