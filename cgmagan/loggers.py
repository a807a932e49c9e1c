"""Loggers from ``conf/logger``, and what a run sends them beyond Lightning's training metrics:
the resolved config at the start; at the end the results (metrics, a table), the overlay panels
and, for W&B, the GAN checkpoint and the CGMA cache manifests as artifacts.

Only rank 0 talks to the loggers (Lightning's loggers are rank-zero-only too)."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.loggers import Logger, WandbLogger

from cgmagan.utils import instantiate_list

log = logging.getLogger(__name__)

WANDB_MODES = ("auto", "online", "offline", "disabled")


def wandb_api_key_configured() -> bool:
    """An API key in the environment or in ~/.netrc (where ``wandb login`` puts it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_logger(mode: str = "auto", **kwargs) -> WandbLogger:
    """Lightning's WandbLogger; ``mode=auto`` is online when an API key is configured and offline
    otherwise (on CI, on a cluster node without network): ``wandb sync`` uploads it later."""
    if mode not in WANDB_MODES:
        raise ValueError(f"logger.wandb.mode must be one of {WANDB_MODES}, got {mode!r}")
    if mode == "auto":
        mode = "online" if wandb_api_key_configured() else "offline"
    if mode == "offline":
        log.info("W&B runs offline (no API key configured): `wandb sync %s/wandb/offline-run-*` uploads it",
                 kwargs.get("save_dir", "."))  # fmt: skip
    Path(kwargs.get("save_dir") or ".").mkdir(parents=True, exist_ok=True)
    # the mode given to wandb.init itself: W&B's process-wide settings, fixed by an earlier run of this
    # process (a notebook, a test), would otherwise decide it and ask for a login offline
    return WandbLogger(offline=mode == "offline", mode=mode if mode in ("offline", "disabled") else None, **kwargs)


def sweep_group() -> str | None:
    """In a Hydra multirun, the sweep folder's name: every job of one sweep shares it."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).name


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """``cfg.logger``'s loggers (several at once), each given the resolved config. A W&B group left
    null becomes the sweep's name, written back into the config (so results.json records it)."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if wandb_cfg is not None and wandb_cfg.get("group") is None and (group := sweep_group()):
        with open_dict(cfg):
            cfg.logger.wandb.group = group
    loggers = instantiate_list(cfg.get("logger"), "logger")
    config = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        logger.log_hyperparams(config)
    return loggers


def wandb_loggers(loggers: list[Logger]) -> list[WandbLogger]:
    return [lg for lg in loggers if isinstance(lg, WandbLogger)]


def results_rows(results: dict) -> tuple[list[str], list[list]]:
    """A row per (combination, method) with every score (columns: the union over methods)."""
    scores = sorted({key for c in results["combinations"] for row in c["methods"].values() for key in row})
    columns = ["dataset", "backbone", "kind", "classifier_accuracy", "method", *scores]
    rows = [[c["dataset"], c["backbone"], c["kind"], c["classifier_accuracy"], method, *(row.get(k) for k in scores)]
            for c in results["combinations"] for method, row in c["methods"].items()]  # fmt: skip
    return columns, rows


def log_results(loggers: list[Logger], results: dict, output_dir: Path) -> None:
    """The results as a W&B table and summary, and the run's artifacts: the GAN checkpoint used
    and the CGMA cache manifests (what was explained, with checksums)."""
    for logger in wandb_loggers(loggers):
        import wandb

        columns, rows = results_rows(results)
        logger.log_table("results", columns=columns, data=rows)
        run = logger.experiment
        for combo in results["combinations"]:
            name = f"{combo['dataset']}/{combo['backbone']}"
            run.summary[f"{name}/classifier_accuracy"] = combo["classifier_accuracy"]
            for method, row in combo["methods"].items():
                for key, value in row.items():
                    run.summary[f"{name}/{method}/{key}"] = value
        if results.get("gan_checkpoint"):
            model = wandb.Artifact(f"gan-{run.id}", type="model", metadata={
                "conditioning": results["conditioning"], "seed": results["seed"],
                "train_combinations": results["train_combinations"]})  # fmt: skip
            model.add_file(results["gan_checkpoint"], name="gan.ckpt")
            run.log_artifact(model, aliases=["best"])
        manifests = output_dir / "cgma_manifests.json"
        if manifests.is_file():
            cache = wandb.Artifact(f"cgma-manifests-{run.id}", type="cgma-cache")
            cache.add_file(str(manifests), name=manifests.name)
            run.log_artifact(cache)
        results_md = output_dir / "results.md"
        if results_md.is_file():
            run.save(str(results_md), base_path=str(output_dir), policy="now")


def log_sweep_table(wandb_cfg: dict, save_dir: Path, name: str, columns: list[str], rows: list[list],
                    figure_path: Path | None = None) -> str:
    """A sweep's aggregated table (and plot) as one more W&B run in the sweep's group, with the
    project, entity and mode its jobs used. Returns the run's folder."""
    import wandb

    settings = {k: wandb_cfg.get(k) for k in ("project", "entity", "group")}
    mode = wandb_cfg.get("mode", "auto")
    if mode == "auto":
        mode = "online" if wandb_api_key_configured() else "offline"
    save_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(**settings, name=f"aggregate-{name}", job_type="aggregate", dir=str(save_dir), mode=mode)
    try:
        run.log({f"aggregate/{name}": wandb.Table(columns=columns, data=rows)})
        if figure_path is not None:
            run.log({f"aggregate/{name}_plot": wandb.Image(str(figure_path))})
        return run.dir
    finally:
        run.finish()


def log_panels(loggers: list[Logger], key: str, images: list, captions: list[str]) -> None:
    """Images (HxWx3 arrays) with a caption each, as W&B image panels."""
    for logger in wandb_loggers(loggers):
        if images:
            logger.log_image(key, images, caption=captions)


def finish(loggers: list[Logger]) -> None:
    """Close the run's loggers: a multirun's next job must open its own W&B run, not continue this one."""
    for logger in loggers:
        logger.finalize("success")
    for logger in wandb_loggers(loggers):
        if logger._experiment is not None:
            logger.experiment.finish()
