"""Stage gan: the conditional GAN that learns to draw the target Grad-CAM from CGMAs."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from cgmagan.metrics.agreement import dice_at_threshold
from cgmagan.report import figure_to_array, overlay_grid


def as_float32(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cached maps arrive float16 (half the bytes to read and transfer); compute in float32, on the device."""
    return {k: v.float() if v.is_floating_point() else v for k, v in batch.items()}


def gan_input(image: torch.Tensor) -> torch.Tensor:
    """Cached images are RGB in [0, 1]; every dataset meets the generator in [-1, 1]."""
    return image * 2 - 1


class CGMAGAN(pl.LightningModule):
    """pix2pix-style training: D and G updated every step, adversarial + lambda_l1 * L1."""

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        lambda_l1: float = 100.0,
        figure_dir: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["generator", "discriminator"])
        self.generator = generator
        self.discriminator = discriminator
        self.automatic_optimization = False
        self._val_sample: dict[str, torch.Tensor] | None = None

    def forward(self, image: torch.Tensor, cgmas: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] in [0, 1], [B, K, S, S] -> heatmap [B, S, S] in [0, 1]."""
        return self.generator(gan_input(image), cgmas)[:, 0]

    @staticmethod
    def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)))

    def _check_finite(self, **losses: torch.Tensor) -> None:
        bad = {k: v.item() for k, v in losses.items() if not torch.isfinite(v)}
        if bad:
            raise FloatingPointError(
                f"GAN loss not finite at step {self.global_step}: {bad}. The last good checkpoint is "
                "kept in the run's checkpoints folder; lower gan.lr or gan.lambda_l1 and rerun."
            )

    def training_step(self, batch, _idx):
        opt_g, opt_d = self.optimizers()
        batch = as_float32(batch)
        image, cond, target = gan_input(batch["image"]), batch["cgma"], batch["target"][:, None]
        fake = self.generator(image, cond)

        loss_d = 0.5 * (
            self._bce(self.discriminator(image, target), True)
            + self._bce(self.discriminator(image, fake.detach()), False)
        )
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()

        loss_adv = self._bce(self.discriminator(image, fake), True)
        loss_l1 = F.l1_loss(fake, target)
        loss_g = loss_adv + self.hparams.lambda_l1 * loss_l1
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()

        self._check_finite(loss_d=loss_d, loss_g=loss_g)
        self.log_dict({"train/loss_d": loss_d, "train/loss_g_adv": loss_adv, "train/l1": loss_l1}, prog_bar=True)

    def validation_step(self, batch, idx):
        batch = as_float32(batch)
        fake = self(batch["image"], batch["cgma"])
        target = batch["target"]
        self.log("val/l1", F.l1_loss(fake, target), prog_bar=True, sync_dist=True)
        self.log("val/dice", dice_at_threshold(fake, target).mean(), prog_bar=True, sync_dist=True)
        if idx == 0:
            n = min(8, len(fake))
            self._val_sample = {"image": batch["image"][:n], "target": target[:n], "generated": fake[:n]}

    def on_validation_epoch_end(self) -> None:
        if self._val_sample is None or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        s = {k: v.float().cpu() for k, v in self._val_sample.items()}
        columns = {"input": None, "target Grad-CAM": s["target"], "generated": s["generated"]}
        fig = overlay_grid(s["image"], columns, title=f"validation, epoch {self.current_epoch}")
        if self.hparams.figure_dir:
            folder = Path(self.hparams.figure_dir)
            folder.mkdir(parents=True, exist_ok=True)
            fig.savefig(folder / f"gan_val_epoch{self.current_epoch:03d}.png", dpi=80)
        for logger in self.loggers:
            if hasattr(logger, "log_image"):  # W&B and others with image support
                logger.log_image("val/grid", [figure_to_array(fig)], step=self.global_step)
        plt.close(fig)

    def configure_optimizers(self):
        betas = tuple(self.hparams.betas)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas)
        return [opt_g, opt_d]
