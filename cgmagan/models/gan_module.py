"""The conditional GAN that learns to draw the target Grad-CAM from an image and its CGMAs, as a
LightningModule built from ``conf/gan`` (generator and discriminator nested, optimizers as
``_partial_`` configs). Figures are drawn by callbacks, not here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from cgmagan.errors import NumericalError
from cgmagan.metrics.agreement import dice_at_threshold, pearson


def as_float32(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cached maps arrive float16 (half the bytes to read and transfer); compute in float32, on the device."""
    return {k: v.float() if v.is_floating_point() else v for k, v in batch.items()}


def gan_input(image: torch.Tensor) -> torch.Tensor:
    """Cached images are RGB in [0, 1]; every dataset meets the generator in [-1, 1]."""
    return image * 2 - 1


def linear_decay(optimizer: torch.optim.Optimizer, total_steps: int, decay_start: float = 0.5) -> LambdaLR:
    """pix2pix's schedule, per step: the learning rate held for the first ``decay_start`` share of
    the run's steps, then linearly down to 0 at its last step."""
    start = int(decay_start * total_steps)
    return LambdaLR(optimizer, lambda step: min(1.0, max(0.0, (total_steps - step) / max(1, total_steps - start))))


class CGMAGAN(pl.LightningModule):
    """pix2pix-style training: D and G updated every step, lambda_adv * adversarial + lambda_l1 * L1.

    ``lambda_adv`` = 0 trains G on L1 alone (D is not updated); ``use_image`` = False gives G a
    blank image, so its map can come from the CGMAs only (D still sees the image); ``scheduler``
    (optional) is called with each optimizer and the run's total steps and stepped every batch.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer_g: Callable[..., torch.optim.Optimizer],
        optimizer_d: Callable[..., torch.optim.Optimizer],
        lambda_l1: float = 100.0,
        lambda_adv: float = 1.0,
        use_image: bool = True,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        description: dict | None = None,
    ):
        """``description``: the networks' configs, map size and CGMA settings, saved with the
        hyperparameters so that a checkpoint can be rebuilt alone (:func:`cgmagan.stages.gan.load_gan`)."""
        super().__init__()
        self.save_hyperparameters(ignore=["generator", "discriminator"], logger=False)
        self.generator = generator
        self.discriminator = discriminator
        self.automatic_optimization = False

    def forward(self, image: torch.Tensor, cgmas: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] in [0, 1], [B, K, S, S] -> heatmap [B, S, S] in [0, 1]."""
        return self.generator(self._generator_image(gan_input(image)), cgmas)[:, 0]

    def _generator_image(self, image: torch.Tensor) -> torch.Tensor:
        return image if self.hparams.use_image else torch.zeros_like(image)

    @staticmethod
    def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)))

    def _check_finite(self, **losses: torch.Tensor) -> None:
        """Called before the optimiser steps: a non-finite loss never reaches the weights."""
        bad = {k: v.item() for k, v in losses.items() if not torch.isfinite(v)}
        if bad:
            callback = self.trainer.checkpoint_callback if self._trainer is not None else None
            saved = sorted(Path(callback.dirpath).glob("*.ckpt")) if callback and callback.dirpath else []
            kept = (f"the checkpoints saved before it are in {callback.dirpath} ({', '.join(p.name for p in saved)})"
                    if saved else "no checkpoint was saved before it")  # fmt: skip
            raise NumericalError(
                f"GAN loss not finite at epoch {self.current_epoch}, step {self.global_step}: {bad}; the weights were "
                f"not updated with it and {kept}. Lower the GAN's learning rates or gan.module.lambda_l1, check the "
                "cached CGMAs, and rerun."
            )

    def training_step(self, batch, _idx):
        opt_g, opt_d = self.optimizers()
        batch = as_float32(batch)
        image, cond, target = gan_input(batch["image"]), batch["cgma"], batch["target"][:, None]
        fake = self.generator(self._generator_image(image), cond)
        adversarial = self.hparams.lambda_adv > 0
        logs = {}

        if adversarial:
            loss_d = 0.5 * (
                self._bce(self.discriminator(image, target), True)
                + self._bce(self.discriminator(image, fake.detach()), False)
            )
            self._check_finite(loss_d=loss_d)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            opt_d.step()
            logs["train/loss_d"] = loss_d

        loss_l1 = F.l1_loss(fake, target)
        loss_g = self.hparams.lambda_l1 * loss_l1
        if adversarial:
            loss_adv = self._bce(self.discriminator(image, fake), True)
            loss_g = loss_g + self.hparams.lambda_adv * loss_adv
            logs["train/loss_g_adv"] = loss_adv
        self._check_finite(loss_g=loss_g)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()
        for scheduler in self.lr_schedulers() if self.hparams.scheduler else ():
            scheduler.step()

        self.log_dict({**logs, "train/l1": loss_l1}, prog_bar=True)

    def validation_step(self, batch, _idx) -> dict[str, torch.Tensor]:
        """Logs val/l1, val/dice and val/pearson; returns the generated maps for callbacks that draw them."""
        batch = as_float32(batch)
        fake = self(batch["image"], batch["cgma"])
        target = batch["target"]
        self.log("val/l1", F.l1_loss(fake, target), prog_bar=True, sync_dist=True)
        self.log("val/dice", dice_at_threshold(fake, target).mean(), prog_bar=True, sync_dist=True)
        self.log("val/pearson", pearson(fake, target).mean(), sync_dist=True)
        return {"generated": fake}

    def configure_optimizers(self):
        opt_g = self.hparams.optimizer_g(params=self.generator.parameters())
        opt_d = self.hparams.optimizer_d(params=self.discriminator.parameters())
        if self.hparams.scheduler is None:
            return [opt_g, opt_d]
        total = max(1, int(self.trainer.estimated_stepping_batches))  # batches: each steps both optimizers once
        return [opt_g, opt_d], [self.hparams.scheduler(opt, total_steps=total) for opt in (opt_g, opt_d)]
