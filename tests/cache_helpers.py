"""A tiny CGMA cache setup shared by the cache tests and their subprocesses."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from cgmagan.backbones import build_backbone
from cgmagan.data.cgma_datamodule import CGMADataModule, CGMASource
from cgmagan.data.cgma_store import CHECKED
from cgmagan.data.shapes import ShapesDataModule

NAME = "shapes/small_resnet"


def make_datamodule(cache_dir: str, verify: str = "stat") -> CGMADataModule:
    torch.manual_seed(0)
    model = build_backbone("small_resnet", 3, 4).eval().requires_grad_(False)
    data = ShapesDataModule(32, split_sizes=(64, 16, 16), seed=0)
    data.setup()
    cfg = OmegaConf.create({"k": 4, "order": "forward", "exclude_target_layer": False, "map_size": 16,
                            "batch_size": 8, "shard_size": 8, "max_per_split": None, "verify": verify})  # fmt: skip
    return CGMADataModule([CGMASource(NAME, model, data, "fixed-digest")], [NAME], cfg, cache_dir, batch_size=8)


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file of a cache by relative path; not lock files nor the records of when shards were
    last checked (those hold inodes and times, not content)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock") and p.name != CHECKED}  # fmt: skip


class OneStep(pl.LightningModule):
    """Just enough of a model for a Trainer to run the datamodule's hooks under DDP."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def training_step(self, batch, _idx):
        return (self.w * batch["target"].mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)
