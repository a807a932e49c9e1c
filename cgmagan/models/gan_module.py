"""The conditional GAN that learns to draw the target Grad-CAM from an image and its CGMAs, as a
LightningModule built from ``conf/gan`` (generator and discriminator nested, optimizers as
``_partial_`` configs). Figures are drawn by callbacks, not here."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from cgmagan.errors import NumericalError
from cgmagan.metrics.agreement import dice_at_threshold, pearson
from cgmagan.metrics.keep import keep_terms
from cgmagan.utils import training_batches


def as_float32(batch: dict) -> dict:
    """Cached maps arrive float16 (half the bytes to read and transfer); compute in float32, on the
    device. A list (classifier inputs of several shapes) is left as it is."""
    return {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in batch.items()}


def gan_input(image: torch.Tensor) -> torch.Tensor:
    """Cached images are RGB in [0, 1]; every dataset meets the generator in [-1, 1]."""
    return image * 2 - 1


def linear_decay(optimizer: torch.optim.Optimizer, total_steps: int, decay_start: float = 0.5) -> LambdaLR:
    """pix2pix's schedule, per step: the learning rate held for the first ``decay_start`` share of
    the run's steps, then linearly down to 0 at its last step."""
    start = int(decay_start * total_steps)
    return LambdaLR(optimizer, lambda step: min(1.0, max(0.0, (total_steps - step) / max(1, total_steps - start))))


class CGMAGAN(pl.LightningModule):
    """pix2pix-style training: D and G updated every step, lambda_adv * adversarial + lambda_l1 * L1,
    plus, with ``faithfulness.weight`` > 0, TAME / L-CAM's objective (:mod:`cgmagan.metrics.keep`):
    the training combinations' classifiers (frozen, :meth:`attach_classifiers`) fed their input
    times the generated map should keep the explained class, with ``faithfulness.area`` times the
    map's mean and ``faithfulness.smoothness`` times its roughness as penalties.

    ``lambda_adv`` = 0 trains G without D (D is not updated); ``use_image`` = False gives G a
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
        faithfulness: dict | None = None,
        channels_last: bool = False,
        description: dict | None = None,
    ):
        """``description``: the networks' configs, map size and CGMA settings, saved with the
        hyperparameters so that a checkpoint can be rebuilt alone (:func:`cgmagan.stages.gan.load_gan`).
        ``channels_last``: G and D, and every map they are fed, in NHWC memory: oneDNN's convolutions
        at 16-32 channels take ~30 % less time a step on a CPU (benchmarks/gan_speed.md)."""
        super().__init__()
        self.save_hyperparameters(ignore=["generator", "discriminator"], logger=False)
        self.generator = generator
        self.discriminator = discriminator
        if channels_last:  # set here, so that copies (EMA's, a checkpoint's) are born in it
            self.to(memory_format=torch.channels_last)
        self.automatic_optimization = False
        self._classifiers: list[nn.Module] = []  # a plain list: not saved in the GAN's checkpoints

    @property
    def faithful(self) -> bool:
        return float((self.hparams.faithfulness or {}).get("weight") or 0) > 0

    def attach_classifiers(self, classifiers: list[nn.Module], device: torch.device | str = "cpu") -> None:
        """The training combinations' classifiers, in the order of the batches' ``combo`` index; frozen
        copies on ``device`` (fit moves them to the module's), so that the originals keep their
        gradients for Grad-CAM and their mode."""
        self._classifiers = [copy.deepcopy(c).eval().requires_grad_(False).to(device) for c in classifiers]

    def on_fit_start(self) -> None:
        if self.faithful and not self._classifiers:
            raise RuntimeError("gan.faithfulness.weight > 0 needs the classifiers: call attach_classifiers() before fit")
        self._classifiers = [c.to(self.device) for c in self._classifiers]

    on_validation_start = on_fit_start  # trainer.validate() alone, too

    @torch.no_grad()
    def faithfulness_scores(self, maps: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """What validation logs of the faithfulness objective (keep, area, faithfulness) for any maps
        [B, 1, S, S] on a batch served with the classifiers' inputs, on the attached classifiers'
        device: another method's maps (the linear baseline's) scored as G's are."""
        return self._faithfulness(maps, batch)[1]

    def _faithfulness(self, fake: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """The weighted faithfulness objective of ``fake`` [B, 1, S, S], and its parts to log."""
        f = self.hparams.faithfulness
        terms = keep_terms(fake, batch["inputs_by_combination"], batch["pred"].long(), self._classifiers)
        total = terms.total(float(f.get("area", 0.0)), float(f.get("smoothness", 0.0)))
        return total, {"keep": terms.keep, "area": terms.area, "faithfulness": total}

    def forward(self, image: torch.Tensor, cgmas: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] in [0, 1], [B, K, S, S] -> heatmap [B, S, S] in [0, 1]."""
        image, cgmas = self._layout(image, cgmas)
        return self.generator(self._generator_image(gan_input(image)), cgmas)[:, 0]

    def _layout(self, *maps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The networks' memory format for their [B, C, S, S] inputs (a copy only when it differs)."""
        if not self.hparams.get("channels_last"):
            return maps
        return tuple(m.contiguous(memory_format=torch.channels_last) for m in maps)

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
        image, cond, target = self._layout(gan_input(batch["image"]), batch["cgma"], batch["target"][:, None])
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
        if self.faithful:
            faith, parts = self._faithfulness(fake, batch)
            loss_g = loss_g + float(self.hparams.faithfulness["weight"]) * faith
            logs.update({f"train/{k}": v for k, v in parts.items()})
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

        if self._step_logged():
            self.log_dict({**logs, "train/l1": loss_l1}, prog_bar=True)

    def _step_logged(self) -> bool:
        """Whether Lightning writes this batch's step metrics (every ``log_every_n_steps`` batches, all of a
        fast_dev_run): the only batches worth logging, as each ``self.log`` call costs ~1 ms of bookkeeping
        on a CPU, ~5 % of a small GAN step."""
        trainer = self.trainer
        every = trainer.log_every_n_steps
        return bool(trainer.fast_dev_run) or (every > 0 and (training_batches(trainer) + 1) % every == 0)

    def validation_step(self, batch, _idx) -> dict[str, torch.Tensor]:
        """Logs val/l1, val/dice and val/pearson (with the faithfulness objective: its parts, and
        val/objective, G's weighted objective without D); returns the generated maps for callbacks."""
        batch = as_float32(batch)
        fake = self(batch["image"], batch["cgma"])
        target = batch["target"]
        l1 = F.l1_loss(fake, target)
        if self.faithful:
            faith, parts = self._faithfulness(fake[:, None], batch)
            self.log_dict({f"val/{k}": v for k, v in parts.items()}, sync_dist=True)
            objective = self.hparams.lambda_l1 * l1 + float(self.hparams.faithfulness["weight"]) * faith
            self.log("val/objective", objective, sync_dist=True)
        self.log("val/l1", l1, prog_bar=True, sync_dist=True)
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
