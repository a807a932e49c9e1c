"""The CNN to explain, as a LightningModule built from ``conf/classifier`` (LHT-style: the network
nested, the optimizer and scheduler as ``_partial_`` configs)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from cgmagan.backbones import build_net
from cgmagan.errors import NumericalError
from cgmagan.utils import live


class Normalize(nn.Module):
    """Per-channel normalisation inside the network, so callers pass images in [0, 1]."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ClassifierModule(pl.LightningModule):
    """``net`` behind a normalisation layer (``self.net`` = Normalize -> net); cross-entropy.

    ``optimizer`` is called with the parameters; ``scheduler`` (optional, stepped every batch) with
    the optimizer, and with ``total_steps`` (the run's optimiser steps) when it takes that argument,
    as OneCycleLR does.
    """

    def __init__(
        self,
        net: nn.Module | None = None,
        *,
        num_classes: int,
        mean,
        std,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        backbone: dict | None = None,
        in_channels: int | None = None,
        input_size: int | None = None,
        class_names: list[str] | None = None,
    ):
        super().__init__()
        # the checkpoint describes its network (backbone config made inert, channels, input size,
        # class names): ``load_from_checkpoint(path)`` rebuilds it alone
        self.save_hyperparameters(ignore=["net"], logger=False)
        if net is None:
            if backbone is None or in_channels is None:
                raise ValueError("ClassifierModule needs a net, or a backbone config and in_channels to build one")
            net = build_net({**live(backbone), "pretrained": False}, in_channels, num_classes)  # weights: the checkpoint's
        # channels_last: the small backbones' convolutions run 1.3-2.3x faster on CPU, same values
        self.net = nn.Sequential(Normalize(mean, std), net).to(memory_format=torch.channels_last)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, _idx):
        x, y = batch[0], batch[1]
        loss = F.cross_entropy(self(x), y)
        if not torch.isfinite(loss):
            raise NumericalError(
                f"classifier loss is {loss.item()} at step {self.global_step}: lower the classifier's learning rate "
                "(classifier.module.optimizer.lr) or check the input data for NaNs"
            )
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, _idx):
        self.val_acc(self(batch[0]).argmax(1), batch[1])
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch, _idx):
        self.test_acc(self(batch[0]).argmax(1), batch[1])
        self.log("test/acc", self.test_acc)

    def configure_optimizers(self):
        optimizer = self.hparams.optimizer(params=self.parameters())
        if self.hparams.scheduler is None:
            return optimizer
        kwargs = {}
        if "total_steps" in inspect.signature(self.hparams.scheduler).parameters:
            kwargs["total_steps"] = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = self.hparams.scheduler(optimizer=optimizer, **kwargs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def load_classifier(path, map_location="cpu") -> ClassifierModule:
    """A classifier checkpoint of this package (rebuilt from its own description), frozen and in eval
    mode, as the pipeline uses it. Our checkpoints hold their configs, which torch's ``weights_only``
    loading refuses: load only checkpoints you trust (your runs' own)."""
    module = ClassifierModule.load_from_checkpoint(path, map_location=map_location, weights_only=False)
    return module.requires_grad_(False).eval()
