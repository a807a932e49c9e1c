"""Small helpers: content keys, atomic writes, locks, config plumbing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from cgmagan.errors import ConfigError


def digest(obj) -> str:
    """Short sha256 of a JSON-able object (configs are resolved to containers first)."""
    if isinstance(obj, DictConfig):
        obj = OmegaConf.to_container(obj, resolve=True)
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def seed_stage(seed: int | None, *names: str) -> None:
    """Seed every generator for one stage from the run's seed and the stage's names: it draws the
    same numbers whether the stages before it ran or came from the cache (a rerun, a resumed run).
    No seed: nothing is seeded."""
    if seed is not None:  # seed 0 is a seed
        import pytorch_lightning as pl

        pl.seed_everything(int(digest([int(seed), *names]), 16) % 2**31, workers=True, verbose=False)


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cores() -> int:
    """The CPU cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0))


def threads_per_job(jobs: int) -> int:
    """Torch threads for each of ``jobs`` processes running at once on this process's cores."""
    return max(1, cores() // max(1, jobs))


def per_process_batch(batch_size: int, processes: int, setting: str) -> int:
    """A training batch shared among DDP processes: each takes ``batch_size / processes`` rows a step, so
    the optimizer sees the same batch, and takes as many steps, on any number of processes."""
    if batch_size % processes:
        raise ConfigError(f"{setting}={batch_size} is the training batch of the {processes} DDP processes together and "
                          f"must divide among them: set {setting} to a multiple of {processes}")  # fmt: skip
    return batch_size // processes


def training_batches(trainer) -> int:
    """Training batches a Lightning trainer has run so far, resumed ones included: the GAN's steps (its
    ``global_step`` counts optimizer steps, two a batch while D trains and one without it)."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.total.completed)


def write_json_atomic(path: Path, data, sort_keys: bool = True) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=sort_keys, default=str))
    os.replace(tmp, path)


@contextmanager
def atomic_dir(final: Path):
    """Yield a temporary sibling folder; on success it becomes ``final`` in one rename."""
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def locked(path: Path):
    """An inter-process lock beside ``path``, so parallel sweep jobs build a thing once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        yield


def instantiate_list(node: DictConfig | None, what: str) -> list:
    """Objects from a dict of ``_target_`` configs; an entry without one is an error, not skipped
    (set an entry to null to disable it)."""
    objects = []
    for key, conf in (node or {}).items():
        if conf is None:
            continue
        if not isinstance(conf, DictConfig) or "_target_" not in conf:
            raise ValueError(f"{what} entry {key!r} has no _target_; give it one or set it to null to disable it")
        objects.append(instantiate(conf))
    return objects


def inert(config):
    """A config with every ``_target_`` renamed ``factory``: kept in a checkpoint's hyperparameters,
    where Hydra must not build it while it instantiates the module around it. :func:`live` undoes it."""
    if isinstance(config, DictConfig | ListConfig):
        config = OmegaConf.to_container(config, resolve=True)
    if isinstance(config, dict):
        return {("factory" if k == "_target_" else k): inert(v) for k, v in config.items()}
    if isinstance(config, list):
        return [inert(v) for v in config]
    return config


def live(config):
    """The config :func:`inert` kept, instantiable again."""
    if isinstance(config, DictConfig | ListConfig):
        config = OmegaConf.to_container(config, resolve=True)
    if isinstance(config, dict):
        return {("_target_" if k == "factory" else k): live(v) for k, v in config.items()}
    if isinstance(config, list):
        return [live(v) for v in config]
    return config


def epochs_text(epochs: float) -> str:
    """"1 epoch", "2.6 epochs"."""
    return f"{epochs:g} epoch{'' if epochs == 1 else 's'}"
