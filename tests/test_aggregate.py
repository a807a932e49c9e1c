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


def test_each_variant_gets_the_mean_and_spread_of_its_seeds(tmp_path, capsys):
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
    assert f"written: {tmp_path / 'results' / 'lsft_vs_gsft.md'} and" in capsys.readouterr().out  # says where


def test_an_empty_sweep_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the sweep first"):
        load_runs(tmp_path)


def write_kinds_job(root: Path, job: str, seed: int, seen_dice: tuple[float, float], unseen_dice: float,
                    slot_dice: list[float]) -> None:  # fmt: skip
    folder = root / job
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
    importance = {"n_images": 4, "zeros": [{"slot": k + 1, "dice": d, "mean_abs_change": 1 - d} for k, d in enumerate(slot_dice)]}
    combos = [{"dataset": d, "backbone": "small_vgg", "kind": "seen", "methods": {"gan": {"dice_matched_area": v}},
               "condition_importance": importance} for d, v in zip(("shapes", "textures"), seen_dice)]  # fmt: skip
    combos.append({"dataset": "digits", "backbone": "small_vgg", "kind": "unseen_dataset",
                   "methods": {"gan": {"dice_matched_area": unseen_dice}}})  # fmt: skip
    (folder / "results.json").write_text(json.dumps({"command": "python run.py -m seed=0,1", "combinations": combos}))


def test_seen_and_unseen_kinds_and_condition_importance_are_averaged_per_run_then_over_seeds(tmp_path):
    sweep = tmp_path / "sweep"
    write_kinds_job(sweep, "0", 0, seen_dice=(0.8, 0.6), unseen_dice=0.5, slot_dice=[0.9, 0.1])
    write_kinds_job(sweep, "1", 1, seen_dice=(0.9, 0.9), unseen_dice=0.7, slot_dice=[0.7, 0.3])
    main([str(sweep), "--name", "kinds", "--out", str(tmp_path / "results"), "--no-wandb"])
    runs = load_runs(sweep)
    from cgmagan.aggregate import by_kind, condition_importance

    kinds = by_kind(runs)["(every run)"]
    assert list(kinds) == ["seen", "unseen_dataset"]
    mean, std, n = kinds["seen"]["gan"]["dice_matched_area"]  # runs' seen means 0.7 and 0.9
    assert (mean, n) == (pytest.approx(0.8), 2) and std == pytest.approx(np.std([0.7, 0.9], ddof=1))
    assert kinds["unseen_dataset"]["gan"]["dice_matched_area"][0] == pytest.approx(0.6)
    slots = condition_importance(runs)["(every run)"]["zeros"]
    assert slots[1]["dice"][:2] == (pytest.approx(0.8), pytest.approx(np.std([0.9, 0.7], ddof=1)))
    assert slots[2]["mean_abs_change"][0] == pytest.approx(0.8)  # 1 - mean(0.1, 0.3)
    text = (tmp_path / "results" / "kinds.md").read_text()
    assert "| (every run) | unseen_dataset | gan | 0.600 ± 0.141 |" in text
    assert "| (every run) | zeros | 2 | 0.200 ± 0.141 | 0.800 ± 0.141 | 2 |" in text
