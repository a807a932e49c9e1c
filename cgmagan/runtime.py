"""Where every stage computes: the device, the processes and the loggers that the trainer config chooses.

A :class:`Runtime` is made once per run, before any stage. Under DDP it starts the other ranks
first (each reruns this Hydra job, see :mod:`cgmagan.ddp_launch`) and joins their process group, so
every stage runs on every rank: the classifiers train with DDP, each rank computes its share of the
CGMA cache and of the evaluation, the GAN trains with DDP. Each stage builds its own Lightning
Trainer from the same trainer config, so its modules land on the same root device.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from cgmagan.devices import claim_gpu, wants_one_gpu
from cgmagan.errors import ConfigError
from cgmagan.loggers import build_loggers, sweep_group
from cgmagan.loggers import finish as finish_loggers
from cgmagan.utils import locked

log = logging.getLogger(__name__)


def all_gather_objects(obj) -> list:
    """``obj`` from every rank, in rank order (``[obj]`` in a single process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


class Runtime:
    def __init__(self, trainer_cfg: DictConfig, share_gpus: bool = False):
        self.trainer_cfg = trainer_cfg
        self.loggers: list[Logger] = []  # set by from_config once this process knows its rank
        self._gpu_claim = None
        if share_gpus and wants_one_gpu(trainer_cfg) and torch.cuda.device_count() > 1:
            index, self._gpu_claim = claim_gpu(torch.cuda.device_count())
            self.trainer_cfg = OmegaConf.merge(trainer_cfg, {"devices": [index]})
            log.info("this job runs on GPU %d (the others are held by parallel jobs of the sweep or free)", index)
        # this process's own trainer: its strategy knows the rank, world size and root device
        try:
            self.anchor = self.trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
        except InstantiationException as err:  # e.g. trainer=gpu where there is none: Lightning says why
            hint = ""
            if str(trainer_cfg.get("accelerator")) in ("gpu", "cuda") and not torch.cuda.is_available():
                hint = (" No GPU is visible here (torch.cuda.is_available() is False): run on the CPU with trainer=cpu, "
                        "or trainer=ddp trainer.accelerator=cpu for several processes.")  # fmt: skip
            raise ConfigError(f"the trainer config cannot run here: {err.__cause__ or err}.{hint}") from None
        strategy = self.anchor.strategy
        if strategy.launcher is not None:
            if not isinstance(strategy.launcher, _SubprocessScriptLauncher):
                raise ConfigError(
                    f"trainer.strategy={type(strategy).__name__} starts its processes inside one call; every stage of "
                    "this pipeline runs on every rank, so use trainer=ddp (Lightning's 'ddp' strategy, one script "
                    "per rank) or a cluster launcher"
                )
            strategy.launcher.launch(lambda: None, trainer=self.anchor)  # starts ranks 1..N-1 unless already started
        strategy.setup_environment()  # joins the process group under DDP; selects the device
        log.info("runtime: rank %d of %d, root device %s", self.rank, self.world_size, self.root_device)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Runtime:
        runtime = cls(cfg.trainer, share_gpus=sweep_group() is not None)
        runtime.loggers = build_loggers(cfg)
        return runtime

    def close(self) -> None:
        """End of the job: loggers finished, the claimed GPU (if any) given back."""
        finish_loggers(self.loggers)
        if self._gpu_claim is not None:
            self._gpu_claim.release()
            self._gpu_claim = None

    def trainer(self, **overrides) -> pl.Trainer:
        """A fresh Trainer from the run's trainer config (same accelerator, devices and strategy)."""
        return instantiate(self.trainer_cfg, **overrides)

    @property
    def root_device(self) -> torch.device:
        return self.anchor.strategy.root_device

    @property
    def rank(self) -> int:
        return self.anchor.global_rank

    @property
    def world_size(self) -> int:
        return self.anchor.world_size

    @property
    def is_global_zero(self) -> bool:
        return self.anchor.is_global_zero

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        return self.anchor.strategy.broadcast(obj)

    def attach(self, datamodule: pl.LightningDataModule) -> pl.LightningDataModule:
        """Give a datamodule this process's rank, world size, device and barriers, as a running
        Trainer does, so that its ``prepare_data`` / ``setup`` can run outside ``fit``."""
        datamodule.trainer = self.anchor
        return datamodule

    @contextmanager
    def rank_zero_lock(self, path: Path) -> Iterator[None]:
        """Rank 0 holds the file lock beside ``path`` (other jobs sharing the cache wait for it); the
        other ranks follow rank 0's decisions through :meth:`broadcast`."""
        if self.is_global_zero:
            with locked(path):
                yield
        else:
            yield
