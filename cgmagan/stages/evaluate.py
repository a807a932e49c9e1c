"""Stage evaluate: every registered explanation method (the GAN, Grad-CAM, the no-training
baselines) scored on every combination's test images with ``trainer.test``; rank 0 writes
``results.json``, ``results.md`` and the overlay figure."""

from __future__ import annotations

import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from cgmagan.callbacks import OverlayFigure
from cgmagan.cam import cgma_settings
from cgmagan.config import job_fingerprint
from cgmagan.data.base import loader_workers, stratified_subset
from cgmagan.data.evaluation import EvaluationDataModule, EvaluationDataset, derangement
from cgmagan.loggers import log_results
from cgmagan.methods import scored_method_names, select_methods
from cgmagan.models.evaluation_module import ExplanationEvaluator
from cgmagan.report import condition_importance_figure, markdown_table, run_header, sanity_check_figure, save_figure
from cgmagan.runtime import Runtime, all_gather_objects
from cgmagan.sanity import ModelExplainer, model_randomisation
from cgmagan.stages.cgma import CGMACache
from cgmagan.stages.classifier import TrainedClassifier
from cgmagan.stages.gan import TrainedGAN, fit_linear_baseline
from cgmagan.utils import write_json_atomic

log = logging.getLogger(__name__)

ZERO_TARGET_FLAG = 0.05  # a combination with more all-zero targets explains little


@dataclass
class Evaluation:
    """The stage's result: what ``results.json`` holds, and the markdown tables."""

    results: dict
    table: str


def _command() -> str:
    return " ".join(shlex.quote(a) for a in ["python", Path(sys.argv[0]).name, *sys.argv[1:]])


def test_items(clf: TrainedClassifier, cache: CGMACache, ev: DictConfig, seed: int) -> EvaluationDataset:
    """The cached test rows to score: ``evaluate.max_images`` of them; among those, the
    ``evaluate.auc_images`` for deletion / insertion, and among these the ``evaluate.road_images``
    for ROAD, each a seeded stratified sample; each AUC image's partner for condition importance
    is another AUC image, by a seeded derangement (the same on any batch size or rank)."""
    rows = cache.test_rows(clf.name)
    labels = rows["label"].rows(0, len(rows["label"]))
    evaluated = stratified_subset(labels, int(ev.max_images), seed)
    auc = stratified_subset(labels[evaluated], int(ev.auc_images), seed)
    in_auc, in_road = np.zeros(len(evaluated), bool), np.zeros(len(evaluated), bool)
    in_auc[auc] = True
    in_road[auc[stratified_subset(labels[evaluated][auc], int(ev.road_images), seed)]] = True
    indices = cache.datamodule.indices(clf.name, "test")
    partner = np.full(len(evaluated), -1)
    auc_items = np.flatnonzero(in_auc)  # condition importance: each AUC image's CGMAs swapped with another's
    partner[auc_items] = auc_items[derangement(len(auc_items), seed)]
    return EvaluationDataset(clf.name, clf.data.dataset("test"), rows, indices, evaluated, in_auc, in_road, partner)


def sanity_checks(cfg: DictConfig, evaluator: ExplanationEvaluator, datasets: list[EvaluationDataset],
                  runtime: Runtime) -> list[dict | None]:  # fmt: skip
    """The model randomisation test of every method on each combination's first
    ``evaluate.sanity_images`` AUC images, on this process's device (None where switched off). Under
    DDP rank r checks combinations r, r + world, ... and the ranks gather them: no rank waits while
    another does the work (a ResNet50's cascade with Score-CAM is hours at paper size)."""
    n = int(cfg.evaluate.get("sanity_images") or 0)
    if n <= 0:
        return [None] * len(datasets)
    mine = range(runtime.rank, len(datasets), runtime.world_size)
    if mine:
        log.info("sanity check: rank %d of %d checks combinations %s", runtime.rank, runtime.world_size,
                 ", ".join(datasets[i].name for i in mine))  # fmt: skip
    device = runtime.root_device
    gan = evaluator.gan.to(device).eval() if evaluator.gan is not None else None
    constants = {k: getattr(evaluator, k).to(device) for k in ("mean_train_target", "linear_weights", "centred_gaussian")}
    cgma_cfg = cgma_settings(cfg.cgma)
    checks = {}
    for combo in tqdm(mine, desc="sanity check (model randomisation)", leave=False):
        ds = datasets[combo]
        items = [ds[int(i)] for i in np.flatnonzero(ds.in_auc)[:n]]
        x = torch.stack([it["input"] for it in items]).to(device)
        classes = torch.stack([it["pred"] for it in items]).long().to(device)
        classifier = evaluator.classifiers[combo].to(device)
        target = next(name for name, m in classifier.named_modules() if m is evaluator.target_modules[combo])
        explainer = ModelExplainer(classifier, target, gan, cgma_cfg, int(cfg.cgma.map_size), constants)
        check = model_randomisation(explainer, x, classes, evaluator.methods, seed=int(cfg.seed or 0))
        checks[combo] = {**check, "n_images": len(items)}
    gathered = {combo: check for part in all_gather_objects(checks) for combo, check in part.items()}
    return [gathered[combo] for combo in range(len(datasets))]


def evaluate(cfg: DictConfig, gan: TrainedGAN, runtime: Runtime) -> Evaluation:
    """Entry point."""
    cache = gan.cache
    classifiers = cache.classifiers.all
    ev = cfg.evaluate
    datasets = [test_items(c, cache, ev, cfg.classifier.seed or 0) for c in classifiers]  # the same images for every GAN seed
    linear_weights = gan.linear_weights if gan.linear_weights is not None else fit_linear_baseline(cache)
    evaluator = ExplanationEvaluator(
        names=[c.name for c in classifiers],
        classifiers=[c.module.net for c in classifiers],
        target_layers=[cache.datamodule.manifests[(c.name, "test")]["layers"][-1] for c in classifiers],
        has_masks=["mask" in ds.rows for ds in datasets],
        gan=gan.module,
        mean_train_target=cache.datamodule.mean_train_target(),
        linear_weights=linear_weights,
        methods=select_methods(scored_method_names(cfg)),
        deletion_steps=int(ev.deletion_steps),
        road_percentiles=list(ev.road_percentiles),
        area=float(ev.area),
        gaussian_sigma=float(ev.gaussian_sigma),
        num_cgmas=int(cfg.cgma.k) if ev.condition_importance else 0,
    )
    out = Path(cfg.paths.output_dir)
    overlays = OverlayFigure(out / "overlays.png", rows=int(ev.overlay_rows),
                             combinations=[f"{c.name} ({c.combination.kind.replace('_', ' ')})" for c in classifiers],
                             class_names=[c.data.class_names for c in classifiers])  # fmt: skip
    # CAM methods backpropagate (no inference mode); maps and scores in float32 whatever the training precision
    trainer = runtime.trainer(logger=runtime.loggers or False, callbacks=[overlays], enable_checkpointing=False,
                              inference_mode=False, precision="32-true")  # fmt: skip
    log.info("evaluating %d methods on %d combinations: rank %d of %d scores %d of %d test images", len(evaluator.methods),
             len(datasets), runtime.rank, runtime.world_size,
             sum(len(range(runtime.rank, len(ds), runtime.world_size)) for ds in datasets), sum(map(len, datasets)))
    device = runtime.root_device
    data = EvaluationDataModule(datasets, batch_size=int(ev.batch_size), num_workers=loader_workers(ev.get("num_workers"), device),
                                pin_memory=device.type == "cuda")  # fmt: skip
    trainer.test(evaluator, datamodule=data, verbose=False)

    checks = sanity_checks(cfg, evaluator, datasets, runtime)
    entries = []
    for clf, scores, check in zip(classifiers, evaluator.results, checks):
        share = cache.datamodule.zero_target_share(clf.name)
        entry = {
            "dataset": clf.combination.dataset,
            "backbone": clf.combination.backbone,
            "seen": clf.combination.seen,
            "kind": clf.combination.kind,
            "classifier_accuracy": clf.test_accuracy,
            "classifier_checkpoint": str(clf.checkpoint),
            "zero_target_share": share,
            "near_chance": clf.near_chance,
            "flagged": share > ZERO_TARGET_FLAG or clf.near_chance,
            "n_test": scores["n_images"],
            "n_auc": scores["n_auc"],
            "n_road": scores["n_road"],
            "num_layers": cache.datamodule.manifests[(clf.name, "test")]["num_layers"],
            "methods": scores["methods"],
        }
        if "condition_importance" in scores:
            entry["condition_importance"] = scores["condition_importance"]
        if check:
            entry["sanity_check"] = check
            for method, values in check["spearman"].items():
                entry["methods"][method]["randomisation_spearman"] = values[-1]
        if entry["flagged"]:
            log.warning("%s: classifier accuracy %.1f %% (chance %.1f %%), %.1f %% all-zero targets: its explanations "
                        "mean little", clf.name, 100 * clf.test_accuracy, 100 / clf.data.num_classes, 100 * share)  # fmt: skip
        entries.append(entry)
    results = {
        "command": _command(),
        "conditioning": cfg.conditioning.name,
        "seed": cfg.seed,
        "classifier_seed": cfg.classifier.seed,
        "train_combinations": [c.name for c in cache.classifiers.train],
        "gan_checkpoint": str(gan.checkpoint) if gan.checkpoint else None,
        "gan_training": gan.training,  # steps, why it stopped, the best score, the curve, the linear baseline's
        "settings": {"area": float(ev.area), "deletion_steps": int(ev.deletion_steps),
                     "road_images": int(ev.road_images), "road_percentiles": list(ev.road_percentiles),
                     "linear_cgma_weights": [round(float(w), 6) for w in linear_weights]},  # K CGMAs, then the bias
        "combinations": entries,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "job_fingerprint": job_fingerprint(cfg),
    }
    table = markdown_table(results)
    if runtime.is_global_zero:
        manifests = {f"{name}/{split}": manifest for (name, split), manifest in cache.datamodule.manifests.items()}
        write_json_atomic(out / "cgma_manifests.json", manifests)  # which cached rows were explained
        write_json_atomic(out / "results.json", results, sort_keys=False)  # methods in registry order
        (out / "results.md").write_text(f"# Results\n\n{run_header(results)}\n\n{table}\n")
        if any("condition_importance" in c for c in entries):
            save_figure(condition_importance_figure(results), out / "condition_importance.png")
        if any("sanity_check" in c for c in entries):
            save_figure(sanity_check_figure(results), out / "sanity_check.png")
        log_results(runtime.loggers, results, out)
        print(table)
        log.info("results written to %s", out)
    return Evaluation(results, table)
