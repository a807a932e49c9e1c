"""Sweep folders into tables: mean ± std over seeds per variant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from cgmagan.aggregate import load_runs, main


def write_job(root: Path, job: str, overrides: list[str], dice: float, pearson: float, flagged: bool = False) -> None:
    folder = root / job
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    combo = {"dataset": "shapes", "backbone": "small_resnet", "kind": "seen", "flagged": flagged,
             "methods": {"gan": {"dice": dice, "pearson": pearson}, "gradcam": {"dice": 1.0, "pearson": 1.0}}}  # fmt: skip
    results = {"command": "python run.py -m conditioning=lsft,gsft seed=0,1", "combinations": [combo]}
    (folder / "results.json").write_text(json.dumps(results))


def test_each_variant_gets_the_mean_and_spread_of_its_seeds(tmp_path):
    sweep = tmp_path / "sweep"
    write_job(sweep, "0", ["conditioning=lsft", "seed=0"], 0.80, 0.90)
    write_job(sweep, "1", ["conditioning=lsft", "seed=1"], 0.70, 0.80)
    write_job(sweep, "2", ["conditioning=gsft", "seed=0"], 0.60, 0.70)
    write_job(sweep, "3", ["conditioning=gsft", "seed=1"], 0.64, 0.74, flagged=True)
    table = main([str(sweep), "--name", "lsft_vs_gsft", "--out", str(tmp_path / "results")])
    cells = table["shapes/small_resnet (seen)"]
    assert sorted(cells) == ["conditioning=gsft", "conditioning=lsft"]
    mean, std, n = cells["conditioning=lsft"]["gan"]["dice"]
    assert (mean, n) == (pytest.approx(0.75), 2) and std == pytest.approx(np.std([0.8, 0.7], ddof=1))
    assert cells["conditioning=gsft"]["gan"]["pearson"][0] == pytest.approx(0.72)
    text = (tmp_path / "results" / "lsft_vs_gsft.md").read_text()
    assert "| conditioning=lsft | gan | 0.750 ± 0.071 |" in text and "`python run.py -m conditioning=lsft,gsft seed=0,1`" in text
    assert "## shapes/small_resnet (seen) — **FLAGGED in 1 of 4 runs**" in text
    assert (tmp_path / "results" / "lsft_vs_gsft.png").stat().st_size > 5_000


def test_an_empty_sweep_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the sweep first"):
        load_runs(tmp_path)
