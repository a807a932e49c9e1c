"""One GPU per job when a multirun runs several jobs at once on one multi-GPU node
(``hydra/launcher=parallel``): each job claims the first GPU that no other job holds.

A claim is an exclusive file lock per GPU in a node-local folder, held until the job ends; the
operating system drops it if the job dies, so a killed job never keeps its GPU."""

from __future__ import annotations

import getpass
import logging
import tempfile
import time
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

LOCK_DIR = Path(tempfile.gettempdir()) / f"cgmagan-gpus-{getpass.getuser()}"


def claim_gpu(count: int, lock_dir: Path = LOCK_DIR, poll_s: float = 5.0) -> tuple[int, FileLock]:
    """(index, held lock) of a GPU among ``0..count-1`` that no other job holds; waits for one to
    free up when every GPU is taken (more parallel jobs than GPUs)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for index in range(count):
            lock = FileLock(lock_dir / f"cuda{index}.lock", timeout=0)
            try:
                lock.acquire()
            except Timeout:
                continue
            return index, lock
        if not waited:
            log.info("all %d GPUs are held by other jobs; waiting for one", count)
            waited = True
        time.sleep(poll_s)


def wants_one_gpu(trainer_cfg) -> bool:
    """A trainer config asking for one GPU without naming which."""
    return str(trainer_cfg.get("accelerator")) in ("gpu", "cuda", "auto") and trainer_cfg.get("devices") in (1, "1")
