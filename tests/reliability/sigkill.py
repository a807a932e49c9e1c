"""Callbacks that signal their own process once, at the start of a GAN epoch, after the previous
epoch's checkpoints are on disk: SIGKILL, as a pre-empted cluster job dies, or SIGUSR2, the signal
SLURM (and submitit's local executor) sends a job whose time runs out."""

import os
import signal
from pathlib import Path

import pytorch_lightning as pl


class SigkillOnce(pl.Callback):
    def __init__(self, marker: str, at_epoch: int = 1):
        self.marker, self.at_epoch = Path(marker), at_epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.at_epoch and not self.marker.exists():
            self.marker.write_text(f"killed at epoch {trainer.current_epoch}, step {trainer.global_step}\n")
            os.kill(os.getpid(), signal.SIGKILL)


class TimeoutSignalOnce(pl.Callback):
    def __init__(self, marker: str, at_epoch: int = 1):
        self.marker, self.at_epoch = Path(marker), at_epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.at_epoch and not self.marker.exists():
            self.marker.write_text(f"signalled at epoch {trainer.current_epoch}, step {trainer.global_step}\n")
            os.kill(os.getpid(), signal.SIGUSR2)
