"""Stage gan: the conditional GAN trained on the training combinations' cached CGMAs (or loaded
from ``gan.checkpoint``), on the trainer's device and strategy; its best checkpoint is kept."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EMAWeightAveraging

from cgmagan.cam import cgma_settings
from cgmagan.errors import UserError
from cgmagan.models.gan_module import CGMAGAN
from cgmagan.runtime import Runtime
from cgmagan.stages.cgma import CGMACache
from cgmagan.utils import digest, inert, instantiate_list, live, seed_stage

log = logging.getLogger(__name__)


@dataclass
class TrainedGAN:
    """The stage's result: the GAN in its best state and the checkpoint it came from (None when
    the run kept no checkpoint)."""

    module: CGMAGAN
    checkpoint: Path | None
    cache: CGMACache


def describe(cfg: DictConfig) -> dict:
    """What a GAN checkpoint needs to be rebuilt and used alone: its networks' configs (made inert),
    the map size and the CGMA settings its inputs were made with."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    gan = resolved["gan"]
    return {"generator": inert(gan["module"]["generator"]), "discriminator": inert(gan["module"]["discriminator"]),
            "map_size": int(gan["map_size"]), "cgma": cgma_settings(resolved["cgma"]),
            "conditioning": resolved["conditioning"]["name"], "train_combinations": list(resolved["combinations"]["train"]),
            "training_key": training_key(cfg)}  # fmt: skip


def training_key(cfg: DictConfig) -> str:
    """What a GAN's training depends on, its length aside: a killed run, or one given more
    epochs, may continue from a last.ckpt with the same key."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    gan = {k: v for k, v in resolved["gan"].items() if k not in ("max_epochs", "checkpoint", "trainer", "num_workers")}
    cgma = {k: v for k, v in resolved["cgma"].items() if k not in ("num_workers", "verify")}  # how, not what
    return digest({"gan": gan, "cgma": cgma, "combinations": resolved["combinations"]["train"],
                   "seed": resolved.get("seed")})  # fmt: skip


def resumable(path: Path, key: str) -> bool:
    """``path`` is a last.ckpt of a GAN trained with ``key``."""
    if not path.is_file():
        return False
    try:
        description = checkpoint_description(path)
    except UserError as err:  # unreadable (killed while writing it, say): train from the start
        log.warning("GAN: not resuming from %s: %s", path, err)
        return False
    if description.get("training_key") != key:
        log.warning("GAN: not resuming from %s: it was trained with other settings", path)
        return False
    return True


def checkpoint_description(path: str | Path) -> dict:
    """The description a GAN checkpoint was saved with (see :func:`describe`)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise UserError(f"GAN checkpoint {path} does not exist") from None
    except Exception as err:  # truncated or not a checkpoint: torch raises several kinds  # noqa: BLE001
        raise UserError(f"GAN checkpoint {path} cannot be read ({type(err).__name__}: {err}); is it a .ckpt "
                        "written by this package, and complete?") from None  # fmt: skip
    description = checkpoint.get("hyper_parameters", {}).get("description")
    if not description:
        raise UserError(f"{path} is not a GAN checkpoint of this package, or predates self-describing checkpoints "
                        "(retrain the GAN, or evaluate it with the run's config: python run.py gan.checkpoint=...)")  # fmt: skip
    return description


def load_gan(path: str | Path, cfg: DictConfig | None = None) -> CGMAGAN:
    """A GAN checkpoint, into the networks that ``cfg.gan.module`` describes, or (no config) that
    the checkpoint's own description names."""
    if cfg is None:
        description = checkpoint_description(path)
        networks = {k: instantiate(live(description[k])) for k in ("generator", "discriminator")}
    else:
        networks = {k: instantiate(cfg.gan.module[k]) for k in ("generator", "discriminator")}
    try:
        return CGMAGAN.load_from_checkpoint(path, map_location="cpu", weights_only=False, **networks)
    except FileNotFoundError:
        raise UserError(f"GAN checkpoint {path} does not exist") from None
    except RuntimeError as err:  # load_state_dict: missing keys or other shapes
        what = ("this run's generator and discriminator (conditioning, gan.*, cgma.k)" if cfg is not None
                else "the networks its own description names")  # fmt: skip
        raise UserError(f"GAN checkpoint {path} does not fit {what}: {str(err).splitlines()[0]}") from None


def gan_callbacks(cfg: DictConfig) -> list:
    """The ``callbacks`` group's, and Lightning's EMA of the weights when ``gan.ema_decay`` is set:
    validation, checkpoints and so the evaluated GAN then hold the averaged weights."""
    callbacks = instantiate_list(cfg.get("callbacks"), "callbacks")
    if cfg.gan.get("ema_decay") is not None:
        callbacks.append(EMAWeightAveraging(decay=float(cfg.gan.ema_decay)))
    return callbacks


def train_gan(cfg: DictConfig, cache: CGMACache, runtime: Runtime) -> TrainedGAN:
    """Entry point: fit the GAN (Lightning's loops, checkpointing and callbacks from config),
    continuing from the run folder's last.ckpt when one of the same training is there;
    ``gan.trainer`` holds Trainer settings for this fit only."""
    if cfg.gan.checkpoint:
        log.info("GAN: loading %s instead of training", cfg.gan.checkpoint)
        return TrainedGAN(load_gan(cfg.gan.checkpoint, cfg), Path(cfg.gan.checkpoint), cache)
    seed_stage(cfg.get("seed"), "gan")
    gan = instantiate(cfg.gan.module, description=describe(cfg))
    overrides = cfg.gan.get("trainer")
    overrides = OmegaConf.to_container(overrides, resolve=True) if overrides else {}
    trainer = runtime.trainer(logger=runtime.loggers or False, callbacks=gan_callbacks(cfg), **overrides)
    last = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt" if trainer.checkpoint_callback else None
    resume = runtime.broadcast(bool(last) and runtime.is_global_zero and resumable(last, training_key(cfg)))
    if resume:
        log.info("GAN: resuming from %s (this run was interrupted, or is given more epochs)", last)
    trainer.fit(gan, datamodule=cache.datamodule, ckpt_path=str(last) if resume else None,
                weights_only=False)  # our own checkpoint: it holds the hyperparameters (configs), not only tensors
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    if not best:
        return TrainedGAN(gan, None, cache)
    log.info("GAN: using the best checkpoint %s", best)
    return TrainedGAN(load_gan(best, cfg), Path(best), cache)
