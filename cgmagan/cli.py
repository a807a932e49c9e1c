"""``python run.py [+experiment=NAME] [overrides]``: the one entry point."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from cgmagan import ddp_launch
from cgmagan.errors import UserError
from cgmagan.pipeline import run_experiment

log = logging.getLogger("cgmagan")


# the config tree ships inside the package (from the repository's conf/): found wherever this runs
@hydra.main(version_base="1.3", config_path="pkg://cgmagan.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    ddp_launch.install()  # DDP worker ranks rerun this job, also inside a multirun
    try:
        with ddp_launch.job_scope():
            results = run_experiment(cfg)
    except UserError as err:  # the message says what to do; a traceback would only bury it
        log.error("%s", err)
        sys.exit(2)
    # the GAN's mean Dice over training combinations: what a sweeper optimises
    seen = [c["methods"]["gan"]["dice"] for c in results["combinations"] if c["seen"] and "gan" in c["methods"]]
    return sum(seen) / len(seen) if seen else None


if __name__ == "__main__":
    main()
