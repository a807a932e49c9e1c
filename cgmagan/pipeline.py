"""The whole experiment as one testable function; ``cgmagan.cli`` is only a thin Hydra wrapper.

    classifier ─► cgma ─► gan ─► evaluate       (cgmagan/stages/, one module each)

Each stage takes the run's config, the previous stage's result and the :class:`Runtime` (the
device, processes and loggers that the trainer config chose), and returns its own result.
"""

from __future__ import annotations

import pytorch_lightning as pl
from omegaconf import DictConfig

from cgmagan.config import resolve_paths, validate
from cgmagan.runtime import Runtime
from cgmagan.stages.cgma import build_cgma_cache
from cgmagan.stages.classifier import train_classifiers
from cgmagan.stages.evaluate import evaluate
from cgmagan.stages.gan import train_gan


def run_experiment(cfg: DictConfig) -> dict:
    """Classifier -> CGMA cache -> GAN -> evaluation. Returns the results written to results.json."""
    validate(cfg)
    resolve_paths(cfg)
    if cfg.get("seed") is not None:  # seed 0 is a seed
        pl.seed_everything(int(cfg.seed), workers=True)
    runtime = Runtime.from_config(cfg)

    classifiers = train_classifiers(cfg, runtime)
    cache = build_cgma_cache(cfg, classifiers, runtime)
    gan = train_gan(cfg, cache, runtime)
    return evaluate(cfg, gan, runtime).results
