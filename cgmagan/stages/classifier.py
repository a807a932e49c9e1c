"""Stage classifier: every combination's CNN, trained once on the trainer's device and strategy,
cached by content and reused by every later run and sweep job."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from cgmagan.backbones import build_net
from cgmagan.callbacks import BatchNormRecalibration, RNGStateInCheckpoint
from cgmagan.cam import select_layers
from cgmagan.combinations import Combination, resolve_combinations
from cgmagan.data.base import ClassificationDataModule
from cgmagan.data.cgma_datamodule import check_layers
from cgmagan.errors import ConfigError
from cgmagan.models.classifier_module import ClassifierModule
from cgmagan.runtime import Runtime
from cgmagan.utils import digest, epochs_text, file_sha256, inert, seed_stage, write_json_atomic

log = logging.getLogger(__name__)

# trainer settings that change the trained weights; devices, strategy and loggers do not (under DDP the
# processes share dataset.batch_size: the same batch and steps on any number of them)
_TRAINER_KEYS = ("fast_dev_run", "limit_train_batches", "overfit_batches", "max_steps", "precision",
                 "accumulate_grad_batches", "gradient_clip_val", "deterministic")  # fmt: skip
CHECKPOINT, META, IN_PROGRESS = "classifier.ckpt", "meta.json", "training"
CLASSIFIERS = "classifiers.json"  # in the run folder: each combination's classifier checkpoint


@dataclass
class TrainedClassifier:
    combination: Combination
    data: ClassificationDataModule  # set up: its splits are the ones the classifier was tested on
    module: ClassifierModule  # eval mode, parameters frozen
    test_accuracy: float
    checkpoint: Path
    checkpoint_sha256: str
    reused: bool

    @property
    def name(self) -> str:
        return self.combination.name

    @property
    def near_chance(self) -> bool:
        return self.test_accuracy < 2 / self.data.num_classes


@dataclass
class Classifiers:
    """The stage's result: the GAN's training combinations and the held-out ones."""

    train: list[TrainedClassifier]
    unseen: list[TrainedClassifier]

    @property
    def all(self) -> list[TrainedClassifier]:
        return self.train + self.unseen


def classifier_settings(combo: Combination, cfg: DictConfig) -> dict:
    """The settings of data, network and training that the trained weights depend on (and
    ``classifier.seed``, not the GAN's ``seed``: GAN seeds over the same classifier.seed share the
    classifiers); what the cost estimate of a sweep groups its jobs' classifiers by."""
    data = {k: v for k, v in OmegaConf.to_container(combo.dataset_cfg, resolve=True).items()
            if k not in ("num_workers", "root", "download", "checked_dir")}  # batch_size: the training batch  # fmt: skip
    trainer = {k: cfg.trainer.get(k) for k in _TRAINER_KEYS}
    backbone = {k: v for k, v in OmegaConf.to_container(combo.backbone_cfg, resolve=True).items()
                if k != "target_layer"}  # what is explained, not how the net is trained  # fmt: skip
    return {"data": data, "input_size": combo.input_size, "backbone": backbone,
            "classifier": OmegaConf.to_container(cfg.classifier, resolve=True),
            "trainer": trainer, "format": 7}  # 7: the training batch (all DDP processes' together) in the key  # fmt: skip


def classifier_key(combo: Combination, cfg: DictConfig, dm: ClassificationDataModule) -> str:
    """The settings and the data itself (its fingerprint: another copy or version of a dataset is
    another key)."""
    settings = classifier_settings(combo, cfg)
    settings["data"]["fingerprint"] = dm.fingerprint()
    return digest(settings)


def _net(combo: Combination, dm: ClassificationDataModule, for_loading: bool = False):
    backbone = OmegaConf.to_container(combo.backbone_cfg, resolve=True)
    if for_loading and "pretrained" in backbone:  # the checkpoint holds the weights: no ImageNet file needed
        backbone["pretrained"] = False
    return build_net(backbone, dm.channels, dm.num_classes)


def check_explainable(combo: Combination, dm: ClassificationDataModule, cfg: DictConfig) -> None:
    """The (untrained) network at the data's input size has a target layer of at least 4x4 and
    enough conv layers for ``cgma.k``: the same architecture is checked before its training."""
    probe = dm.dataset("train")[0][0].unsqueeze(0)
    try:
        net = _net(combo, dm, for_loading=True).eval()  # its random weights do not matter: each stage seeds its own
        layers = select_layers(net, probe, target=combo.backbone_cfg.get("target_layer"))
    except ConfigError as err:
        raise ConfigError(f"{combo.name}: {err}") from None
    check_layers(combo.name, len(layers), cfg.cgma)


def _build_module(combo: Combination, dm: ClassificationDataModule, cfg: DictConfig) -> ClassifierModule:
    return instantiate(cfg.classifier.module, net=_net(combo, dm), num_classes=dm.num_classes,
                       mean=list(dm.mean), std=list(dm.std),
                       backbone=inert(OmegaConf.to_container(combo.backbone_cfg, resolve=True)), in_channels=dm.channels,
                       input_size=combo.input_size, class_names=list(dm.class_names))  # fmt: skip


def _verified_meta(folder: Path) -> dict | None:
    """The cached classifier's record when its checkpoint is there and intact; a damaged one is
    moved aside (and retrained)."""
    ckpt, meta_path = folder / CHECKPOINT, folder / META
    if not (ckpt.is_file() and meta_path.is_file()):
        return None
    meta = json.loads(meta_path.read_text())
    if file_sha256(ckpt) != meta.get("checkpoint_sha256"):
        damaged = folder.with_name(folder.name + f".damaged-{int(time.time())}")
        os.replace(folder, damaged)
        log.warning("classifier checkpoint %s fails its checksum; moved to %s and retraining", ckpt, damaged)
        return None
    return meta


def _resumable(last: Path) -> bool:
    """``last`` is a complete checkpoint (a kill while writing it leaves a truncated file: set aside)."""
    if not last.is_file():
        return False
    try:
        torch.load(last, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated or damaged: torch raises several kinds  # noqa: BLE001
        last.replace(last.with_name(f"last.damaged-{int(time.time())}.ckpt"))
        log.warning("classifier: %s cannot be read (%s); set aside, training from the start", last, type(err).__name__)
        return False
    return True


def _frozen(module: ClassifierModule) -> ClassifierModule:
    return module.requires_grad_(False).eval()


def train_or_load(combo: Combination, dm: ClassificationDataModule, cfg: DictConfig, runtime: Runtime) -> TrainedClassifier:
    folder = Path(cfg.paths.cache_dir) / "classifiers" / f"{combo.dataset}-{combo.backbone}-{classifier_key(combo, cfg, dm)}"
    with runtime.rank_zero_lock(folder):
        meta = runtime.broadcast(_verified_meta(folder) if runtime.is_global_zero else None)
        if meta is not None:
            module = ClassifierModule.load_from_checkpoint(folder / CHECKPOINT, map_location="cpu", weights_only=False,
                                                           net=_net(combo, dm, for_loading=True))  # fmt: skip
            log.info("classifier %s reused from %s (test accuracy %.4f)", combo.name, folder, meta["test_accuracy"])
            return TrainedClassifier(combo, dm, _frozen(module), meta["test_accuracy"], folder / CHECKPOINT,
                                     meta["checkpoint_sha256"], reused=True)  # fmt: skip

        seed_stage(cfg.classifier.seed, "classifier", combo.name)
        module = _build_module(combo, dm, cfg)
        recalibration = BatchNormRecalibration(dm.loader("train", shuffle=True), cfg.classifier.bn_recalibration_batches)
        progress = folder / IN_PROGRESS  # the training's last.ckpt until it is done: a killed run continues from it
        trainer = runtime.trainer(
            max_epochs=cfg.classifier.max_epochs,
            logger=CSVLogger(cfg.paths.output_dir, name="classifiers", version=f"{combo.dataset}-{combo.backbone}"),
            callbacks=[recalibration, RNGStateInCheckpoint(),
                       ModelCheckpoint(dirpath=progress, filename="last", enable_version_counter=False)],
        )  # fmt: skip
        last = progress / "last.ckpt"
        resume = runtime.broadcast(runtime.is_global_zero and _resumable(last))
        length = (f"a fast_dev_run of {int(trainer.fast_dev_run)} batch(es)" if trainer.fast_dev_run
                  else epochs_text(int(cfg.classifier.max_epochs)))  # fmt: skip
        log.info("training classifier %s for %s on %d process(es)%s", combo.name, length, runtime.world_size,
                 f", resuming from {last}" if resume else "")  # fmt: skip
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None,
                    weights_only=False)  # our own checkpoint: its hyperparameters hold configs  # fmt: skip
        (result,) = trainer.test(module, datamodule=dm, verbose=False)
        accuracy = float(result["test/acc"])
        tmp = folder / f".{CHECKPOINT}.tmp"
        # weights and hyperparameters only: what is loaded later; the training state (callbacks,
        # optimiser) holds paths of this cache folder and would make equal classifiers differ
        trainer.save_checkpoint(tmp, weights_only=True)  # every rank takes part; rank 0 writes
        if runtime.is_global_zero:
            os.replace(tmp, folder / CHECKPOINT)
            meta = {"combination": combo.name, "test_accuracy": accuracy,
                    "checkpoint_sha256": file_sha256(folder / CHECKPOINT),
                    "config": OmegaConf.to_container(cfg.classifier, resolve=True)}  # fmt: skip
            write_json_atomic(folder / META, meta)
            shutil.rmtree(progress, ignore_errors=True)
            log.info("classifier %s: test accuracy %.4f, saved to %s", combo.name, accuracy, folder)
        meta = runtime.broadcast(meta)
        return TrainedClassifier(combo, dm, _frozen(module), accuracy, folder / CHECKPOINT, meta["checkpoint_sha256"],
                                 reused=False)  # fmt: skip


def train_classifiers(cfg: DictConfig, runtime: Runtime) -> Classifiers:
    """Entry point: the classifier of every combination in ``cfg.combinations``."""
    train, unseen = resolve_combinations(cfg)
    data = {}
    for combo in train + unseen:  # every dataset and network first: a missing dataset or a network that cannot
        dm = data[combo.name] = combo.datamodule()  # be explained as configured fails before any training
        dm.setup()
        check_explainable(combo, dm, cfg)
        dm.fingerprint()  # kept: the cache keys need it
        dm.release()  # one combination's data in memory at a time
    trained = []
    for combo in train + unseen:
        trained.append(train_or_load(combo, data[combo.name], cfg, runtime))
        data[combo.name].release()
    if runtime.is_global_zero:  # the run folder says which classifiers it used, even if it stops later
        write_json_atomic(Path(cfg.paths.output_dir) / CLASSIFIERS, [
            {"combination": c.name, "kind": c.combination.kind, "checkpoint": str(c.checkpoint),
             "checkpoint_sha256": c.checkpoint_sha256, "test_accuracy": c.test_accuracy, "reused": c.reused}
            for c in trained], sort_keys=False)  # fmt: skip
    return Classifiers(train=trained[: len(train)], unseen=trained[len(train) :])
