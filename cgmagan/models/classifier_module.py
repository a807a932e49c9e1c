"""Stage classifier: the CNN to explain, trained with Lightning."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from cgmagan.errors import UserError


class Normalize(nn.Module):
    """Per-channel normalisation inside the network, so callers pass images in [0, 1]."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def build_net(backbone: dict, in_channels: int, num_classes: int) -> nn.Module:
    """The backbone config's ``_target_`` called with its other keys (``input_size`` aside, the
    data's business) plus the data's channels and classes: any factory with that signature works."""
    kwargs = {k: v for k, v in backbone.items() if k != "input_size"}
    try:
        return instantiate(kwargs, in_channels=in_channels, num_classes=num_classes)
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):
            raise err.__cause__ from None  # its message already says what to change
        raise


class ClassifierModule(pl.LightningModule):
    """Backbone behind a normalisation layer; cross-entropy, AdamW with a cosine schedule."""

    def __init__(
        self,
        backbone: dict,
        in_channels: int,
        num_classes: int,
        mean,
        std,
        lr: float = 2e-3,
        weight_decay: float = 5e-4,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(Normalize(mean, std), build_net(backbone, in_channels, num_classes))
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, _idx):
        x, y = batch[0], batch[1]
        loss = F.cross_entropy(self(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"classifier loss is {loss.item()} at step {self.global_step}: lower classifier.lr "
                "or check the input data for NaNs"
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
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        steps = self.trainer.estimated_stepping_batches
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.hparams.lr, total_steps=max(1, int(steps)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
