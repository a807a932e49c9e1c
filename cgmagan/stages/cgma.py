"""Stage cgma: the CGMAs and target Grad-CAMs of every combination's splits, computed on the
trainer's device (under DDP, each rank its share of the shards) into the content-keyed cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from cgmagan.data.cgma_datamodule import CGMADataModule, CGMASource
from cgmagan.data.cgma_store import ShardedArrays
from cgmagan.runtime import Runtime
from cgmagan.stages.classifier import Classifiers

log = logging.getLogger(__name__)


@dataclass
class CGMACache:
    """The stage's result: the filled cache, served by ``datamodule`` to the GAN."""

    datamodule: CGMADataModule
    classifiers: Classifiers

    def test_rows(self, name: str) -> dict[str, ShardedArrays]:
        return self.datamodule.arrays(name, "test")


def build_cgma_cache(cfg: DictConfig, classifiers: Classifiers, runtime: Runtime) -> CGMACache:
    """Entry point: compute what the cache lacks, verify the rest, read the manifests."""
    cgma_cfg = cfg.cgma
    if cfg.trainer.get("fast_dev_run"):  # a smoke test: one precompute batch per split, not the whole dataset
        limit = int(cfg.cgma.batch_size) * max(1, int(cfg.trainer.fast_dev_run))
        limit = min(limit, cfg.cgma.max_per_split or limit)
        cgma_cfg = OmegaConf.create({**OmegaConf.to_container(cfg.cgma, resolve=True), "max_per_split": limit})
        log.info("fast_dev_run: CGMAs of at most %d images per split", limit)
    sources = [CGMASource(c.name, c.module.net, c.data, c.checkpoint_sha256, c.combination.backbone_cfg.get("target_layer"))
               for c in classifiers.all]  # fmt: skip
    dm = CGMADataModule(sources, [c.name for c in classifiers.train], cgma_cfg, cfg.paths.cache_dir,
                        batch_size=cfg.gan.batch_size, num_workers=cfg.gan.num_workers, seed=cfg.seed or 0,
                        subset_seed=cfg.classifier.seed or 0)  # fmt: skip
    runtime.attach(dm)
    dm.prepare_data()  # one process: compute the missing shards under a file lock
    dm.setup()  # under DDP each rank computes its shards here; every rank reads the manifests
    return CGMACache(dm, classifiers)
