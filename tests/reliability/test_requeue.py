"""Promise: a cluster job that runs out of time is requeued by the SLURM preset, and the requeued job
continues where it stopped: the same job in the same folder, classifiers and CGMAs from the cache,
the GAN from its last.ckpt with its step counter. Run with submitit's local executor, which handles
the timeout signal (USR2) and requeues as on SLURM, with the SLURM preset's max_num_timeout."""

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import torch
from omegaconf import OmegaConf

from tests.conftest import FEW_METHODS, TINY

ROOT = Path(__file__).resolve().parents[2]


def test_a_job_that_times_out_is_requeued_and_resumes_its_gan_where_it_stopped(tmp_path):
    preset = OmegaConf.load(str(resources.files("cgmagan.conf") / "hydra" / "launcher" / "slurm.yaml"))
    sweep = tmp_path / "sweep"
    # timeout_min=5: under submitit's 10-minute margin, so its signal counts as a timeout (not a pre-emption)
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
           f"+hydra.launcher.max_num_timeout={preset.max_num_timeout}", *TINY, *FEW_METHODS, "combinations.unseen=[]",
           "combinations.train=[digits/small_vgg]", "gan.max_epochs=3", "print_config=false",
           "+callbacks.timeout._target_=tests.reliability.sigkill.SignalOnce", "+callbacks.timeout.signal_name=SIGUSR2",
           f"+callbacks.timeout.marker={tmp_path / 'signalled'}", f"paths.cache_dir={tmp_path / 'cache'}",
           f"paths.data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    signalled = (tmp_path / "signalled").read_text()
    assert signalled.startswith("signalled at epoch 1, step ")
    per_epoch = int(signalled.split("step ")[1])  # optimiser steps of one epoch (D and G)
    submitit_logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.*"))
    assert "this job is timed-out" in submitit_logs and "Requeued job" in submitit_logs
    job = sweep / "0"
    log = (job / "cli.log").read_text()  # both attempts: the classifier trained once, then reused
    assert log.count("training classifier") == 1 and log.count("reused from") == 1
    assert f"GAN: resuming from {job / 'checkpoints' / 'last.ckpt'}" in log
    assert torch.load(job / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 3 * per_epoch
    assert json.loads((job / "results.json").read_text())["gan_checkpoint"] and not (job / "INCOMPLETE").exists()
