"""Train the classifier of a combination once; every later run with the same config reuses it."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger

from cgmagan.combinations import Combination
from cgmagan.data.base import ClassificationDataModule
from cgmagan.models.classifier_module import ClassifierModule
from cgmagan.utils import digest, file_sha256, locked, write_json_atomic

log = logging.getLogger(__name__)

# trainer settings that change the trained weights; devices and loggers do not
_TRAINER_KEYS = ("fast_dev_run", "limit_train_batches", "precision", "accumulate_grad_batches", "gradient_clip_val")


@dataclass
class TrainedClassifier:
    module: ClassifierModule
    test_accuracy: float
    checkpoint: Path
    checkpoint_sha256: str
    reused: bool


def classifier_key(combo: Combination, cfg: DictConfig) -> str:
    data = {k: v for k, v in OmegaConf.to_container(combo.dataset_cfg, resolve=True).items()
            if k not in ("batch_size", "num_workers", "root", "download")}  # fmt: skip
    trainer = {k: cfg.trainer.get(k) for k in _TRAINER_KEYS}
    return digest(
        {"data": data, "input_size": combo.input_size, "backbone": combo.backbone_cfg, "classifier": cfg.classifier,
         "trainer": trainer, "seed": cfg.seed, "format": 2}
    )  # fmt: skip


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, loader, max_batches: int) -> None:
    """Re-estimate BN running statistics as a plain average over training batches: after a
    short run the momentum-averaged statistics lag the weights and eval mode sits at chance."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or max_batches <= 0:
        return
    momenta = {m: m.momentum for m in bns}
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        model(batch[0])
    for m in bns:
        m.momentum = momenta[m]
    model.train(was_training)


def _build_module(combo: Combination, dm: ClassificationDataModule, cfg: DictConfig) -> ClassifierModule:
    return ClassifierModule(
        backbone=OmegaConf.to_container(combo.backbone_cfg, resolve=True),
        in_channels=dm.channels,
        num_classes=dm.num_classes,
        mean=list(dm.mean),
        std=list(dm.std),
        lr=cfg.classifier.lr,
        weight_decay=cfg.classifier.weight_decay,
    )


def _load(folder: Path, backbone: dict) -> TrainedClassifier | None:
    ckpt, meta_path = folder / "classifier.ckpt", folder / "meta.json"
    if not (ckpt.is_file() and meta_path.is_file()):
        return None
    meta = json.loads(meta_path.read_text())
    sha = file_sha256(ckpt)
    if sha != meta.get("checkpoint_sha256"):
        damaged = folder.with_name(folder.name + f".damaged-{int(time.time())}")
        os.replace(folder, damaged)
        log.warning("classifier checkpoint %s fails its checksum; moved to %s and retraining", ckpt, damaged)
        return None
    if "pretrained" in backbone:  # the checkpoint holds the weights: no ImageNet file needed to rebuild
        backbone = {**backbone, "pretrained": False}
    module = ClassifierModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False, backbone=backbone)
    return TrainedClassifier(module.eval(), meta["test_accuracy"], ckpt, sha, reused=True)


def train_or_load_classifier(combo: Combination, dm: ClassificationDataModule, cfg: DictConfig) -> TrainedClassifier:
    folder = Path(cfg.paths.cache_dir) / "classifiers" / f"{combo.dataset}-{combo.backbone}-{classifier_key(combo, cfg)}"
    with locked(folder):
        found = _load(folder, OmegaConf.to_container(combo.backbone_cfg, resolve=True))
        if found is not None:
            log.info("classifier %s reused from %s (test accuracy %.4f)", combo.name, folder, found.test_accuracy)
            return found
        module = _build_module(combo, dm, cfg)
        trainer = instantiate(
            cfg.trainer,
            max_epochs=cfg.classifier.max_epochs,
            devices=1,  # one process: classifiers are small next to the GAN, and the cache lock stays simple
            strategy="auto",
            logger=CSVLogger(cfg.paths.output_dir, name="classifiers", version=f"{combo.dataset}-{combo.backbone}"),
            callbacks=[],
            enable_checkpointing=False,
        )
        log.info("training classifier %s for %d epochs", combo.name, cfg.classifier.max_epochs)
        trainer.fit(module, datamodule=dm)
        recalibrate_batchnorm(module.net, dm.loader("train", shuffle=True), cfg.classifier.bn_recalibration_batches)
        module.eval()
        (result,) = trainer.test(module, datamodule=dm, verbose=False)
        accuracy = float(result["test/acc"])
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".classifier.ckpt.tmp"
        trainer.save_checkpoint(tmp)
        os.replace(tmp, folder / "classifier.ckpt")
        sha = file_sha256(folder / "classifier.ckpt")
        write_json_atomic(
            folder / "meta.json",
            {"combination": combo.name, "test_accuracy": accuracy, "checkpoint_sha256": sha,
             "config": OmegaConf.to_container(cfg.classifier, resolve=True)},
        )  # fmt: skip
        log.info("classifier %s: test accuracy %.4f, saved to %s", combo.name, accuracy, folder)
        return TrainedClassifier(module.eval(), accuracy, folder / "classifier.ckpt", sha, reused=False)
