"""The whole experiment as testable functions; ``cgmagan.cli`` is only a thin Hydra wrapper."""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from cgmagan.combinations import Combination, resolve_combinations
from cgmagan.data.cgma_datamodule import CGMADataModule, CGMASource, check_cgma_settings
from cgmagan.models.gan_module import CGMAGAN
from cgmagan.report import markdown_table, overlay_grid
from cgmagan.stages.classifier import TrainedClassifier, train_or_load_classifier
from cgmagan.stages.evaluate import evaluate_combination, mean_training_target

log = logging.getLogger(__name__)


def instantiate_list(node: DictConfig | None, what: str) -> list:
    """Objects from a dict of ``_target_`` configs; an entry without one is an error, not skipped."""
    objects = []
    for key, conf in (node or {}).items():
        if conf is None:
            continue
        if not isinstance(conf, DictConfig) or "_target_" not in conf:
            raise ValueError(f"{what} entry {key!r} has no _target_; give it one or set it to null to disable it")
        objects.append(instantiate(conf))
    return objects


def prepare_paths(cfg: DictConfig) -> None:
    """Absolute paths, so that nothing depends on where a launcher runs a job."""
    with open_dict(cfg):
        for key in ("data_dir", "cache_dir", "output_dir"):
            cfg.paths[key] = str(Path(cfg.paths[key]).expanduser().resolve())
    Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)


def build_data(combos: list[Combination]) -> dict[str, pl.LightningDataModule]:
    """Every combination's data, set up now: a missing dataset fails before any training."""
    modules = {}
    for combo in combos:
        dm = combo.datamodule()
        dm.setup()
        modules[combo.name] = dm
    return modules


def train_gan(cfg: DictConfig, dm: CGMADataModule) -> tuple[CGMAGAN, pl.Trainer]:
    gan = CGMAGAN(
        generator=instantiate(cfg.conditioning.generator),
        discriminator=instantiate(cfg.gan.discriminator),
        lr=cfg.gan.lr,
        betas=tuple(cfg.gan.betas),
        lambda_l1=cfg.gan.lambda_l1,
        figure_dir=str(Path(cfg.paths.output_dir) / "figures"),
    )
    trainer = instantiate(
        cfg.trainer,
        logger=instantiate_list(cfg.get("logger"), "logger") or False,
        callbacks=instantiate_list(cfg.get("callbacks"), "callbacks"),
    )
    trainer.fit(gan, datamodule=dm)
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    if best:
        log.info("GAN: using the best checkpoint %s", best)
        gan.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["state_dict"])
    return gan, trainer


def write_outputs(results: dict, figures: dict, out: Path) -> str:
    (out / "results.json").write_text(json.dumps(results, indent=2))
    table = markdown_table(results)
    (out / "results.md").write_text(f"# Results\n\nCommand: `{results['command']}`\n\n{table}\n")
    rows = min(4, min(len(f["image"]) for f in figures.values()))
    names = ["gradcam", "gan", "last_cgma", "penultimate_gradcam"]
    images = torch.cat([f["image"][:rows] for f in figures.values()])
    columns = {"input": None, **{n: torch.cat([f[n][:rows] for f in figures.values()]) for n in names}}
    labels = [c for c in figures for _ in range(rows)]
    fig = overlay_grid(images, columns, title="Grad-CAM vs GAN on test images", row_labels=labels)
    fig.savefig(out / "overlays.png", dpi=90)
    return table


def run_experiment(cfg: DictConfig) -> dict:
    """Classifier -> CGMA cache -> GAN -> evaluation. Returns the results written to results.json."""
    if cfg.get("seed") is not None:  # seed 0 is a seed
        pl.seed_everything(int(cfg.seed), workers=True)
    prepare_paths(cfg)
    check_cgma_settings(cfg.cgma)
    train, unseen = resolve_combinations(cfg)
    combos = train + unseen
    data = build_data(combos)

    classifiers: dict[str, TrainedClassifier] = {}
    for combo in combos:
        trained = train_or_load_classifier(combo, data[combo.name], cfg)
        trained.module.requires_grad_(False)
        classifiers[combo.name] = trained

    sources = [CGMASource(c.name, classifiers[c.name].module.net, data[c.name], classifiers[c.name].checkpoint_sha256)
               for c in combos]  # fmt: skip
    cgma_dm = CGMADataModule(sources, [c.name for c in train], cfg.cgma, cfg.paths.cache_dir,
                             batch_size=cfg.gan.batch_size, num_workers=cfg.gan.num_workers)  # fmt: skip
    # trainer.fit runs the datamodule's prepare_data / setup: under DDP each rank computes its shards
    gan, trainer = train_gan(cfg, cgma_dm)
    if not trainer.is_global_zero:
        return {}

    mean_target = mean_training_target(cgma_dm)
    entries, figures = [], {}
    for combo in combos:
        clf = classifiers[combo.name]
        entry, maps = evaluate_combination(combo, clf.module.net, clf.test_accuracy, gan, cgma_dm, mean_target, cfg)
        entries.append(entry)
        figures[combo.name] = maps
    results = {
        "command": " ".join(shlex.quote(a) for a in ["python", Path(sys.argv[0]).name, *sys.argv[1:]]),
        "conditioning": cfg.conditioning.name,
        "train_combinations": [c.name for c in train],
        "combinations": entries,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    table = write_outputs(results, figures, Path(cfg.paths.output_dir))
    print(table)
    log.info("results written to %s", cfg.paths.output_dir)
    return results
