"""Evaluation as a LightningModule: ``trainer.test`` scores every registered explanation method
on every combination's test images, on the trainer's device; under DDP each rank scores its
share and the metric states are reduced across ranks."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn

from cgmagan.methods import REFERENCE_METHOD, ExplanationMethod
from cgmagan.metrics import faithfulness as fa
from cgmagan.metrics.agreement import AGREEMENT_METRICS, both_empty, dice_at_threshold, ranking, top_area_mask
from cgmagan.metrics.scores import TOP_AREAS, ConditionImportance, ExplanationScores
from cgmagan.models.gan_module import CGMAGAN, as_float32


def centred_gaussian(size: int, sigma: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Peak-1 Gaussian at the centre [size, size], sigma as a share of the side."""
    r = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2 * (sigma * size) ** 2))
    return g / g.max()


def localization(maps: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image, in %: the map's maximum inside the object (pointing game) and the share of the
    map's total inside it (energy)."""
    flat, m = maps.flatten(1), masks.flatten(1).float()
    peak = ranking(flat)[:, 0]  # argmax, with ties (saturated maps) broken by position on every rank alike
    hit = m.gather(1, peak[:, None])[:, 0] * (flat.amax(1) > 0)
    energy = (flat * m).sum(1) / flat.sum(1).clamp_min(1e-12)
    return {"pointing_game": 100 * hit, "energy_in_mask": 100 * energy}


class ExplanationEvaluator(pl.LightningModule):
    """Test dataloader i holds combination i's test items (:class:`EvaluationDataset`; deletion and
    insertion for those marked ``in_auc``) and is explained through ``classifiers[i]``, whose
    target Grad-CAM layer is ``target_modules[i]``. Run it with ``inference_mode=False``: CAM
    methods need gradients.
    ``results`` holds each combination's scores after ``trainer.test``, the same on every rank."""

    def __init__(
        self,
        names: list[str],
        classifiers: list[nn.Module],
        target_layers: list[str],
        has_masks: list[bool],
        gan: CGMAGAN,
        mean_train_target: torch.Tensor,
        linear_weights: torch.Tensor,
        methods: list[ExplanationMethod],
        deletion_steps: int = 20,
        road_percentiles: list[int] = (10, 30, 50, 70, 90),
        area: float = 0.2,
        gaussian_sigma: float = 0.25,
        num_cgmas: int = 8,  # CGMA slots to probe for condition importance; 0: none
    ):
        super().__init__()
        self.names = list(names)
        self.classifiers = nn.ModuleList(classifiers)
        self.target_modules = [dict(c.named_modules())[name] for c, name in zip(classifiers, target_layers)]
        self.gan = gan
        self.methods = list(methods)
        self.deletion_steps, self.area, self.road_percentiles = deletion_steps, area, list(road_percentiles)
        size = mean_train_target.shape[-1]
        self.register_buffer("mean_train_target", mean_train_target.float())
        self.register_buffer("linear_weights", linear_weights.float())  # the linear CGMA baseline's K + 1 weights
        self.register_buffer("centred_gaussian", centred_gaussian(size, gaussian_sigma))
        method_names = [m.name for m in self.methods]
        self.scores = nn.ModuleList(ExplanationScores(method_names, masks) for masks in has_masks)
        self.num_slots = num_cgmas if "gan" in method_names else 0
        self.slots = nn.ModuleList(ConditionImportance(self.num_slots) for _ in names)
        self.results: list[dict] = []

    def test_step(self, batch: dict[str, torch.Tensor], _idx: int, dataloader_idx: int = 0) -> dict:
        """Scores the batch; returns ``index``, each method's ``maps``, the predicted class and its
        probability, for callbacks that draw them."""
        batch = as_float32(batch)
        classifier = self.classifiers[dataloader_idx]
        x, target, classes = batch["input"], batch["target"], batch["pred"].long()
        maps = {m.name: m.explain(self, batch, dataloader_idx).float() for m in self.methods}
        y = fa.class_probability(classifier, x, classes)  # confidence on the unmasked image
        in_auc = batch["in_auc"]
        in_road = batch.get("in_road", torch.zeros_like(in_auc))

        per_image, empty, auc, road, drops = [], [], [], [], {}
        for name, heatmap in maps.items():
            full = fa.resize_maps(heatmap, tuple(x.shape[-2:]))
            o = fa.class_probability(classifier, fa.explanation_image(x, full), classes)
            drops[name] = fa.relative_drop(y, o)
            row = {k: f(heatmap, target) for k, f in AGREEMENT_METRICS.items()}
            row["average_drop"], row["increase_in_confidence"] = fa.drop(y, o), fa.increase(y, o)
            # matched area: a binary mask of the map's top share; TAME / L-CAM's top shares: the map's own
            # values kept on its top share, zero elsewhere
            o_area = fa.class_probability(classifier, fa.explanation_image(x, top_area_mask(full, self.area)), classes)
            row["average_drop_matched_area"] = fa.drop(y, o_area)
            for suffix, area in TOP_AREAS.items():
                kept = full * top_area_mask(full, area)
                o_area = fa.class_probability(classifier, fa.explanation_image(x, kept), classes)
                row[f"average_drop_{suffix}"], row[f"increase_in_confidence_{suffix}"] = fa.drop(y, o_area), fa.increase(y, o_area)
            if "mask" in batch:
                row.update(localization(heatmap, batch["mask"]))
            per_image.append(row)
            empty.append(both_empty(heatmap, target))
            if in_auc.any():
                dele, ins = fa.deletion_insertion_auc(classifier, x[in_auc], full[in_auc], classes[in_auc],
                                                      self.deletion_steps)  # fmt: skip
                auc.append(torch.stack([dele, ins]))
            else:
                auc.append(x.new_zeros(2, 0))
            if in_road.any():  # the image's index seeds its imputation noise: the same on any rank
                road.append(torch.stack(fa.road(classifier, x[in_road], full[in_road], classes[in_road],
                                                self.road_percentiles, batch["index"][in_road])))  # fmt: skip
            else:
                road.append(x.new_zeros(2, 0))
        reference = drops[REFERENCE_METHOD]
        for row, name in zip(per_image, maps):
            row["win_vs_gradcam"] = fa.win(drops[name], reference)

        scores = self.scores[dataloader_idx]
        values = torch.stack([torch.stack([row[k] for k in scores.keys]) for row in per_image])  # [M, Q, B]
        scores.update(values, torch.stack(empty), torch.stack(auc), torch.stack(road))
        if self.num_slots and in_auc.any():
            self._condition_importance(batch, maps["gan"], in_auc, dataloader_idx)
        return {"index": batch["index"], "maps": maps, "pred": classes, "probability": y}

    def _condition_importance(self, batch: dict[str, torch.Tensor], generated: torch.Tensor, rows: torch.Tensor,
                              dataloader_idx: int) -> None:  # fmt: skip
        """On the batch's AUC images: the GAN's map with CGMA slot k zeroed or taken from the image's
        partner (another AUC image, fixed by the dataset: the same whatever the batch or the rank)."""
        image, cgmas, target, generated = batch["image"][rows], batch["cgma"][rows], batch["target"][rows], generated[rows]
        change, dice = [], []
        for other in (torch.zeros_like(cgmas), batch["other_cgma"][rows]):
            per_slot = []
            for k in range(self.num_slots):
                replaced = cgmas.clone()
                replaced[:, k] = other[:, k]
                per_slot.append(self.gan(image, replaced))
            out = torch.stack(per_slot)  # [K, B, S, S]
            change.append((out - generated).abs().flatten(2).mean(2))
            dice.append(torch.stack([dice_at_threshold(o, target) for o in out]))
        self.slots[dataloader_idx].update(torch.stack(change), torch.stack(dice))

    def on_test_epoch_end(self) -> None:
        self.results = [metric.compute() for metric in self.scores]  # reduced across ranks
        if self.num_slots:
            for result, slots in zip(self.results, self.slots):
                result["condition_importance"] = slots.compute()
        flat = {f"test/{name}/{method}/{key}": float(value)
                for name, result in zip(self.names, self.results)
                for method, row in result["methods"].items() for key, value in row.items()}  # fmt: skip
        flat.update({f"test/{name}/condition/{how}/slot{s['slot']}/{key}": s[key]
                     for name, result in zip(self.names, self.results)
                     for how in ConditionImportance.REPLACEMENTS for s in result.get("condition_importance", {}).get(how, [])
                     for key in ("mean_abs_change", "dice")})  # fmt: skip
        self.log_dict(flat, sync_dist=False)  # already reduced
