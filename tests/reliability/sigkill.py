"""A callback that signals its own process once, at the start of a GAN epoch, after the previous
epoch's checkpoints are on disk: SIGKILL, as a pre-empted cluster job dies, or SIGUSR2, the signal
SLURM (and submitit's local executor) sends a job whose time runs out."""

import os
import signal
from pathlib import Path

import pytorch_lightning as pl


class SignalOnce(pl.Callback):
    def __init__(self, marker: str, at_epoch: int = 1, signal_name: str = "SIGKILL"):
        self.marker, self.at_epoch, self.signal = Path(marker), at_epoch, signal.Signals[signal_name]

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.at_epoch and not self.marker.exists():
            done = "killed" if self.signal == signal.SIGKILL else "signalled"
            self.marker.write_text(f"{done} at epoch {trainer.current_epoch}, step {trainer.global_step}\n")
            os.kill(os.getpid(), self.signal)
