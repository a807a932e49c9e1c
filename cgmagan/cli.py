"""``python run.py [+experiment=NAME] [overrides]``: the one entry point."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cgmagan.pipeline import run_experiment


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    results = run_experiment(cfg)
    # the GAN's mean Dice over training combinations: what a sweeper optimises
    seen = [c["methods"]["gan"]["dice"] for c in results["combinations"] if c["seen"]]
    return sum(seen) / len(seen) if seen else None


if __name__ == "__main__":
    main()
