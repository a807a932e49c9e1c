"""The whole experiment as one testable function; ``cgmagan.cli`` is only a thin Hydra wrapper.

    classifier ─► cgma ─► gan ─► evaluate       (cgmagan/stages/, one module each)

Each stage takes the run's config, the previous stage's result and the :class:`Runtime` (the
device, processes and loggers that the trainer config chose), and returns its own result.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from cgmagan.config import job_fingerprint, resolve_paths, validate
from cgmagan.runtime import Runtime
from cgmagan.stages.cgma import build_cgma_cache
from cgmagan.stages.classifier import train_classifiers
from cgmagan.stages.evaluate import evaluate
from cgmagan.stages.gan import train_gan

log = logging.getLogger(__name__)

INCOMPLETE = "INCOMPLETE"  # in a run folder from its start until its results are written


def finished_results(cfg: DictConfig) -> dict | None:
    """The results of this very job when its output folder already holds them (a rerun of an
    interrupted sweep into the same ``hydra.sweep.dir``)."""
    path = Path(cfg.paths.output_dir) / "results.json"
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # written atomically, so only a hand-edited file gets here: rerun
    return results if results.get("job_fingerprint") == job_fingerprint(cfg) else None


def run_experiment(cfg: DictConfig) -> dict:
    """Classifier -> CGMA cache -> GAN -> evaluation. Returns the results written to results.json;
    with ``skip_finished`` those of an earlier run of the same job in the same folder, untouched."""
    validate(cfg)
    resolve_paths(cfg)
    if cfg.get("skip_finished") and (done := finished_results(cfg)) is not None:
        log.info("skipping: %s/results.json holds this job's results (skip_finished=false reruns it)",
                 cfg.paths.output_dir)  # fmt: skip
        return done
    if cfg.trainer.get("fast_dev_run"):
        log.warning("fast_dev_run: one batch per training and test loop, CGMAs of one precompute batch per split. "
                    "Lightning turns off the loggers (no curves, images or model artifact in W&B) and checkpointing "
                    "(no GAN checkpoint: cgmagan-explain cannot use this run) while it runs")  # fmt: skip
    runtime = Runtime.from_config(cfg)
    marker = Path(cfg.paths.output_dir) / INCOMPLETE
    if runtime.is_global_zero:
        marker.write_text(f"started {time.strftime('%Y-%m-%d %H:%M:%S')}; not finished (killed or failed, or still "
                          f"running). Rerun the same command with hydra.run.dir={cfg.paths.output_dir} (in a sweep: "
                          "the same hydra.sweep.dir) to continue: cached classifiers and CGMA shards are reused.\n")  # fmt: skip
    took, start = {}, time.perf_counter()
    try:
        classifiers = _timed(took, "classifiers", train_classifiers, cfg, runtime)
        cache = _timed(took, "CGMA cache", build_cgma_cache, cfg, classifiers, runtime)
        gan = _timed(took, "GAN", train_gan, cfg, cache, runtime)
        results = _timed(took, "evaluation", evaluate, cfg, gan, runtime).results
        marker.unlink(missing_ok=True)
        log.info("done in %s: %s", duration(time.perf_counter() - start),
                 ", ".join(f"{stage} {duration(seconds)}" for stage, seconds in took.items()))  # fmt: skip
        return results
    finally:
        runtime.close()


def _timed(took: dict[str, float], stage: str, function, *args):
    """``function(*args)``, its wall time kept in ``took[stage]`` (where a run's minutes go, said at its end)."""
    start = time.perf_counter()
    result = function(*args)
    took[stage] = time.perf_counter() - start
    return result


def duration(seconds: float) -> str:
    """13 s, 4 min 5 s."""
    whole = round(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60} s"
