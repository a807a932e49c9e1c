"""Lightning's DDP launcher under Hydra, also inside a multirun.

Lightning starts ranks 1..N-1 by rerunning ``sys.argv`` with ``hydra.run.dir`` set. In a multirun
(``-m seed=0,1 trainer=ddp``) that argv is the whole sweep, so every worker starts a sweep of its
own and rank 0 waits forever (Lightning-AI/pytorch-lightning#11617, #18175). Here a worker runs
``python -m cgmagan.cli`` with this job's own overrides, in this job's output folder, whatever
launched the job (``run.py``, a multirun, a launcher plugin). And since a multirun runs its jobs
one after another in one process, each job leaves no process group or launcher settings behind.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd
from pytorch_lightning.strategies.launchers import subprocess_script

log = logging.getLogger(__name__)


def worker_command(local_rank: int) -> tuple[list[str], str]:
    """(command, working directory) that starts DDP rank ``local_rank`` of the current Hydra job."""
    job = HydraConfig.get()
    command = [sys.executable, "-m", "cgmagan.cli", *job.overrides.task]
    command += [f'hydra.run.dir="{job.runtime.output_dir}"', f"hydra.job.name=train_ddp_process_{local_rank}",
                "hydra.output_subdir=null"]  # fmt: skip
    return command, get_original_cwd()


def install() -> None:
    if not hasattr(subprocess_script, "_hydra_subprocess_cmd"):  # a Lightning other than the pinned one
        log.warning("this Lightning has no _hydra_subprocess_cmd: DDP worker ranks are started Lightning's way, "
                    "which hangs inside a Hydra multirun")  # fmt: skip
        return
    subprocess_script._hydra_subprocess_cmd = worker_command


# what Lightning's launcher writes into the launching process's environment
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")


@contextmanager
def job_scope() -> Iterator[None]:
    """Run one job; afterwards the process is as before it: no process group, the launcher's
    environment variables and torch's thread count restored (the next job launches its own)."""
    env = {k: os.environ.get(k) for k in LAUNCH_ENV}
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(threads)
