"""Promise: a run SIGKILLed during GAN training is continued by rerunning the same command: the
classifiers and CGMAs come from the cache, the GAN resumes from its last checkpoint with its step
counter, and the run finishes."""

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import FEW_METHODS, TINY

ROOT = Path(__file__).resolve().parents[2]


def test_a_run_killed_after_its_first_gan_epoch_resumes_there_and_finishes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "run.py"), *TINY, *FEW_METHODS, "combinations.unseen=[]", "gan.max_epochs=3", "print_config=false",
           "+callbacks.kill._target_=tests.reliability.sigkill.SignalOnce", f"+callbacks.kill.marker={tmp_path / 'killed'}",
           f"paths.cache_dir={tmp_path / 'cache'}", f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={out}"]  # fmt: skip
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert (tmp_path / "killed").read_text().startswith("killed at epoch 1, step 6")
    assert (out / "INCOMPLETE").is_file() and not (out / "results.json").exists()
    last = out / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 6  # epoch 0: 3 batches x (D, G)

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    log = (out / "cli.log").read_text()
    # cli.log holds both runs: the classifiers were trained once (first run), reused by the second
    assert log.count("training classifier") == 2 and log.count("reused from") == 2
    assert f"GAN: resuming from {last}" in log
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 18  # 3 epochs in all
    with open(out / "gan" / "version_1" / "metrics.csv") as f:  # the rerun's log: epochs 1 and 2 only
        epochs = {int(row["epoch"]) for row in csv.DictReader(f) if row.get("val/l1")}
    assert epochs == {1, 2}, "the rerun continued at epoch 1, it did not start over"
    assert json.loads((out / "results.json").read_text())["gan_checkpoint"] and not (out / "INCOMPLETE").exists()
