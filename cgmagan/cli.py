"""``python run.py [+experiment=NAME] [overrides]``: the one entry point."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import rich
import rich.syntax
import rich.tree
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from cgmagan import ddp_launch
from cgmagan.config import apply_debug_preset
from cgmagan.errors import UserError
from cgmagan.pipeline import run_experiment
from cgmagan.settings_help import print_help_if_asked
from cgmagan.utils import cores, threads_per_job

log = logging.getLogger("cgmagan")


# the config tree ships inside the package (from the repository's conf/): found wherever this runs
@rank_zero_only
def print_config_tree(cfg: DictConfig, path: Path) -> None:
    """The resolved config as a rich tree, groups first, on the console and in ``path``."""
    tree = rich.tree.Tree("config", guide_style="dim")
    for key, value in cfg.items():
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else repr(value)
        tree.add(f"[bold]{key}[/bold]").add(rich.syntax.Syntax(text.rstrip(), "yaml", background_color="default"))
    rich.print(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        rich.print(tree, file=f)


def main() -> float | None:
    """``--help``: every setting with its description (from the config files' comments); else the run."""
    if print_help_if_asked("config", sys.argv[1:]):
        return None
    return run()


def job_threads(threads: int | str, launcher: DictConfig | None) -> int | None:
    """The job's torch thread count (None: leave torch's default). ``auto`` under the joblib launcher
    (``hydra/launcher=parallel``) shares the cores among the jobs it runs at once: each worker process
    would otherwise start a thread per core, and the jobs slow each other down several times over."""
    if threads != "auto":
        if not isinstance(threads, int) or threads < 1:
            raise UserError(f"threads={threads!r}: give a positive number of threads, or auto")
        return threads
    if launcher is None or "JoblibLauncher" not in str(launcher.get("_target_", "")):
        return None
    jobs = int(launcher.get("n_jobs") or 1)
    return threads_per_job(cores() if jobs < 1 else jobs)  # joblib's -1: one job per core


@hydra.main(version_base="1.3", config_path="pkg://cgmagan.conf", config_name="config")
def run(cfg: DictConfig) -> float | None:
    ddp_launch.install()  # DDP worker ranks rerun this job, also inside a multirun
    apply_debug_preset(cfg, HydraConfig.get().overrides.task)
    if cfg.get("print_config"):
        print_config_tree(cfg, Path(HydraConfig.get().runtime.output_dir) / "config_tree.log")
    try:
        with ddp_launch.job_scope():  # restores torch's thread count afterwards
            if (threads := job_threads(cfg.get("threads", "auto"), HydraConfig.get().launcher)) is not None:
                torch.set_num_threads(threads)
                log.info("torch on %d thread(s) (threads=%s)", threads, cfg.get("threads"))
            results = run_experiment(cfg)
    except UserError as err:  # the message says what to do; a traceback would only bury it
        log.error("%s", err)
        sys.exit(2)
    # the GAN's mean Dice over training combinations: what a sweeper optimises
    seen = [c["methods"]["gan"]["dice"] for c in results["combinations"] if c["seen"] and "gan" in c["methods"]]
    return sum(seen) / len(seen) if seen else None


if __name__ == "__main__":
    main()
