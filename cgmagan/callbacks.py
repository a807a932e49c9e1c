"""Lightning callbacks: BatchNorm recalibration after classifier training, generator states kept
in checkpoints, and the figures (validation grids, test overlays) that stay out of the
LightningModules."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import _collect_rng_states, _set_rng_states  # Lightning's own (private) helpers
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.callbacks.early_stopping import EarlyStoppingReason
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.trainer.states import TrainerFn
from torch.utils.data import DataLoader

from cgmagan.loggers import log_panels, wandb_loggers
from cgmagan.report import figure_to_array, overlay_grid
from cgmagan.runtime import all_gather_objects
from cgmagan.utils import training_batches


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, loader, max_batches: int, device: torch.device | None = None) -> None:
    """Re-estimate BN running statistics as a plain average over training batches: after a
    short run the momentum-averaged statistics lag the weights and eval mode sits at chance."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or max_batches <= 0:
        return
    momenta = {m: m.momentum for m in bns}
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        model(batch[0].to(device) if device is not None else batch[0])
    for m in bns:
        m.momentum = momenta[m]
    model.train(was_training)


class BatchNormRecalibration(pl.Callback):
    """After training, :func:`recalibrate_batchnorm` of ``pl_module.net`` over ``loader``. Give
    every DDP rank the same loader (not the sharded training one) and the ranks keep equal weights."""

    def __init__(self, loader: DataLoader, max_batches: int = 50):
        self.loader, self.max_batches = loader, max_batches

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # at the fit's end, not the training's: a fit resumed from its final epoch's checkpoint
        # runs no training, and its statistics still need this
        batches = 1 if trainer.fast_dev_run else self.max_batches
        recalibrate_batchnorm(pl_module.net, self.loader, batches, pl_module.device)


class RNGStateInCheckpoint(pl.Callback):
    """Keeps the random generators' states (Python, NumPy, torch, CUDA) in every checkpoint and
    restores them on resume: dropout and augmentations continue as in an uninterrupted run."""

    def state_dict(self) -> dict:
        return _collect_rng_states(include_cuda=torch.cuda.is_available())

    def load_state_dict(self, state_dict: dict) -> None:
        _set_rng_states(state_dict)


def _log_figure(trainer: pl.Trainer, key: str, fig) -> None:
    """The figure's pixels to the loggers that take images (rendered only for them: ~0.1 s a figure)."""
    takers = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger) or hasattr(logger, "log_image")]
    pixels = figure_to_array(fig) if takers else None
    for logger in takers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, pixels, global_step=trainer.global_step, dataformats="HWC")
        else:  # W&B and others with image support
            logger.log_image(key, [pixels], step=trainer.global_step)


class ValidationGrid(pl.Callback):
    """Each training epoch: the first ``rows`` validation images with their target Grad-CAM and the
    generated map at the epoch's last validation, saved to ``dirpath`` and sent to loggers that take
    images. Drawn once an epoch (at its end, or where training stops), not at every validation: with
    ``gan.val_every`` several validations share an epoch's figure, and drawing one took ~0.9 s on a CPU."""

    def __init__(self, dirpath: str, rows: int = 8):
        self.dirpath, self.rows = Path(dirpath), rows
        self._sample: dict[str, torch.Tensor] | None = None
        self._pending = False  # a validation ran since the last figure

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and not trainer.sanity_checking:
            shown = {"image": batch["image"], "target Grad-CAM": batch["target"], "generated": outputs["generated"]}
            self._sample = {k: v[: self.rows].detach().float().cpu() for k, v in shown.items()}
            self._pending = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._draw(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._draw(trainer)  # a run stopped mid-epoch by early stopping

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:  # trainer.validate(): no epoch to wait for
            self._draw(trainer)

    def _draw(self, trainer: pl.Trainer) -> None:
        if not self._pending or not trainer.is_global_zero:
            return
        self._pending = False
        s = dict(self._sample)
        image = s.pop("image")
        fig = overlay_grid(image, {"input": None, **s}, title=f"validation, epoch {trainer.current_epoch}")
        self.dirpath.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.dirpath / f"gan_val_epoch{trainer.current_epoch:03d}.png", dpi=80)
        _log_figure(trainer, "val/grid", fig)
        plt.close(fig)


class AnnealingEarlyStopping(EarlyStopping):
    """Lightning's EarlyStopping, except that a plateau first cuts the learning rates: after
    ``patience`` validations without the score improving by ``min_delta``, every optimizer's rate is
    multiplied by ``factor`` (up to ``cuts`` times, the wait starting again); the plateau after the
    last cut stops training. A run thus ends when even its smallest step no longer improves the
    score, not when a noisy curve first flattens. The cuts made are kept in checkpoints (the rates
    themselves are in the optimizers' states)."""

    def __init__(self, *args, factor: float = 0.3, cuts: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        if not 0 < factor < 1:
            raise ValueError(f"the learning-rate cut factor must lie in (0, 1), got {factor}")
        self.factor, self.cuts = factor, int(cuts)
        self.cut_steps: list[int] = []  # the training batch after which each cut was made
        self._cut_due = False

    def _evaluate_stopping_criteria(self, current: torch.Tensor) -> tuple[bool, str | None]:
        should_stop, reason = super()._evaluate_stopping_criteria(current)
        if should_stop and self.stopping_reason == EarlyStoppingReason.PATIENCE_EXHAUSTED and len(self.cut_steps) < self.cuts:
            self.stopping_reason, self.wait_count, self._cut_due = EarlyStoppingReason.NOT_STOPPED, 0, True
            return False, f"{self.monitor} did not improve for {self.patience} validations: learning rates x {self.factor}"
        return should_stop, reason

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        super()._run_early_stopping_check(trainer)
        if self._cut_due:  # every rank decides alike: the monitored score is synchronised
            self._cut_due = False
            self.cut_steps.append(training_batches(trainer))
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] *= self.factor
            for config in trainer.lr_scheduler_configs:  # a schedule's multipliers apply to the cut rates
                config.scheduler.base_lrs = [lr * self.factor for lr in config.scheduler.base_lrs]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "cut_steps": list(self.cut_steps)}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.cut_steps = list(state_dict.get("cut_steps", []))


class LearningCurve(pl.Callback):
    """The GAN's validation scores (every ``val/`` metric) after every validation, against the training
    step (kept in checkpoints: a resumed run continues its curve). At the end of the fit: ``path``, each of ``scores``'s
    curve with the linear CGMA baseline's score on the same validation data as a reference line
    (``reference``, set by the GAN stage), also sent to loggers that take images."""

    def __init__(self, path: str, scores: tuple[str, ...] = ("val/dice", "val/l1")):
        self.path, self.scores = Path(path), list(dict.fromkeys(scores))  # the monitored score may be one of them
        self.history: list[dict] = []
        self.reference: dict[str, float] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        self.history.append({"epoch": trainer.current_epoch, "step": training_batches(trainer),
                             **{k: float(v) for k, v in sorted(metrics.items()) if k.startswith("val/")}})  # fmt: skip

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not self.history:
            return
        fig, axes = plt.subplots(1, len(self.scores), figsize=(4.5 * len(self.scores), 3.4), squeeze=False)
        steps = [h["step"] for h in self.history]
        for ax, score in zip(axes[0], self.scores):
            ax.plot(steps, [h.get(score, float("nan")) for h in self.history], marker="o", label="GAN")
            if score in self.reference:
                ax.axhline(self.reference[score], color="grey", linestyle="--", label="linear_cgma")
            ax.set_xlabel("training step")
            ax.set_title(score)
            ax.legend()
        fig.tight_layout()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.path, dpi=90)
        _log_figure(trainer, "val/learning_curve", fig)
        plt.close(fig)


class OverlayFigure(pl.Callback):
    """After ``trainer.test`` of an :class:`~cgmagan.models.evaluation_module.ExplanationEvaluator`:
    the first ``rows`` test images of every combination (gathered from every rank), with each
    method's map as a column, saved to ``path``; the column names go into the PNG's metadata. Each
    row names its combination, true and predicted class; W&B also gets one captioned panel per row
    (image, Grad-CAM, GAN)."""

    PANEL_COLUMNS = ("input", "gradcam", "gan")

    def __init__(self, path: str | Path, combinations: list[str], class_names: list[list[str]], rows: int = 4):
        self.path, self.rows = Path(path), rows
        self.combinations, self.class_names = combinations, class_names
        self._kept: list[tuple[int, int, str, dict[str, torch.Tensor]]] = []

    def _row_label(self, combo: int, label: int, pred: int, probability: float) -> str:
        names = self.class_names[combo]
        return f"{self.combinations[combo]}: true {names[label]}, predicted {names[pred]} ({probability:.2f})"

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        for j in (batch["index"] < self.rows).nonzero()[:, 0].tolist():
            item = {"input": batch["image"][j].float().cpu()}
            item.update({name: maps[j].float().cpu() for name, maps in outputs["maps"].items()})
            label = self._row_label(dataloader_idx, int(batch["label"][j]), int(outputs["pred"][j]),
                                    float(outputs["probability"][j]))  # fmt: skip
            self._kept.append((dataloader_idx, int(batch["index"][j]), label, item))

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        kept = sorted((k for part in all_gather_objects(self._kept) for k in part), key=lambda k: k[:2])
        self._kept = []
        if not kept or not trainer.is_global_zero:
            return
        items = [item for *_, item in kept]
        labels = [label for _, _, label, _ in kept]
        columns = list(items[0])
        images = torch.stack([item["input"] for item in items])
        maps = {"input": None, **{c: torch.stack([item[c] for item in items]) for c in columns[1:]}}
        fig = overlay_grid(images, maps, title="Grad-CAM vs the other methods on test images",
                           row_labels=[label.replace(": ", "\n", 1) for label in labels])  # fmt: skip
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.path, dpi=90, metadata={"Description": "columns: " + ", ".join(columns)})
        _log_figure(trainer, "test/overlays", fig)
        plt.close(fig)
        if not wandb_loggers(trainer.loggers):
            return
        panels = [c for c in self.PANEL_COLUMNS if c in maps]
        pixels = []
        for i in range(len(items)):
            panel = overlay_grid(images[i : i + 1], {c: None if maps[c] is None else maps[c][i : i + 1] for c in panels})
            pixels.append(figure_to_array(panel))
            plt.close(panel)
        log_panels(trainer.loggers, "test/explanations", pixels, labels)
