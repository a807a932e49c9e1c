"""Stage gan: the conditional GAN trained on the training combinations' cached CGMAs (or loaded
from ``gan.checkpoint``), on the trainer's device and strategy; its best checkpoint is kept."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from cgmagan.errors import UserError
from cgmagan.models.gan_module import CGMAGAN
from cgmagan.runtime import Runtime
from cgmagan.stages.cgma import CGMACache
from cgmagan.utils import instantiate_list

log = logging.getLogger(__name__)


@dataclass
class TrainedGAN:
    """The stage's result: the GAN in its best state and the checkpoint it came from (None when
    the run kept no checkpoint)."""

    module: CGMAGAN
    checkpoint: Path | None
    cache: CGMACache


def load_gan(path: str | Path, cfg: DictConfig) -> CGMAGAN:
    """A GAN checkpoint into the networks that ``cfg.gan.module`` describes."""
    networks = {k: instantiate(cfg.gan.module[k]) for k in ("generator", "discriminator")}
    try:
        return CGMAGAN.load_from_checkpoint(path, map_location="cpu", weights_only=False, **networks)
    except FileNotFoundError:
        raise UserError(f"GAN checkpoint {path} does not exist") from None
    except RuntimeError as err:  # load_state_dict: missing keys or other shapes
        raise UserError(f"GAN checkpoint {path} does not fit this run's generator and discriminator "
                        f"(conditioning={cfg.conditioning.name}, gan.*, cgma.k): {str(err).splitlines()[0]}") from None


def train_gan(cfg: DictConfig, cache: CGMACache, runtime: Runtime) -> TrainedGAN:
    """Entry point: fit the GAN (Lightning's loops, checkpointing and callbacks from config)."""
    if cfg.gan.checkpoint:
        log.info("GAN: loading %s instead of training", cfg.gan.checkpoint)
        return TrainedGAN(load_gan(cfg.gan.checkpoint, cfg), Path(cfg.gan.checkpoint), cache)
    gan = instantiate(cfg.gan.module)
    trainer = runtime.trainer(logger=runtime.loggers or False, callbacks=instantiate_list(cfg.get("callbacks"), "callbacks"))
    trainer.fit(gan, datamodule=cache.datamodule)
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    if not best:
        return TrainedGAN(gan, None, cache)
    log.info("GAN: using the best checkpoint %s", best)
    return TrainedGAN(load_gan(best, cfg), Path(best), cache)
