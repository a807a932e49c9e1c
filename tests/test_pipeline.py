import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cgmagan.pipeline import run_experiment
from tests.cache_helpers import tree_bytes
from tests.conftest import TINY, compose_config

ROOT = Path(__file__).resolve().parents[1]

METRICS = ("dice", "soft_dice", "average_drop", "increase_in_confidence", "win_vs_gradcam")
METHODS = ("gradcam", "gan", "last_cgma", "mean_train_target", "centred_gaussian")


@pytest.mark.parametrize("conditioning", ["lsft", "gsft"])
def test_tiny_end_to_end_run_writes_finite_results(tmp_path, conditioning):
    cfg = compose_config(tmp_path, [*TINY, f"conditioning={conditioning}"])
    results = run_experiment(cfg)
    out = Path(cfg.paths.output_dir)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["combinations"] == results["combinations"]
    assert (out / "results.md").read_text().count("| gan |") == 3
    assert (out / "overlays.png").stat().st_size > 10_000
    kinds = [(c["dataset"], c["backbone"], c["seen"], c["kind"]) for c in results["combinations"]]
    assert kinds == [("digits", "small_vgg", True, "seen"), ("shapes", "small_resnet", True, "seen"),
                     ("shapes", "small_mobilenet", False, "unseen_backbone")]  # fmt: skip
    for combo in results["combinations"]:
        assert 0 <= combo["classifier_accuracy"] <= 1 and 0 <= combo["zero_target_share"] <= 1
        for method in METHODS:
            for metric in METRICS:
                value = combo["methods"][method][metric]
                assert math.isfinite(value), (combo["dataset"], method, metric)
        gradcam = combo["methods"]["gradcam"]
        assert gradcam["win_vs_gradcam"] == 50.0 and gradcam["dice"] == 1.0
        assert "pointing_game" in combo["methods"]["gan"] or combo["dataset"] == "digits"


def test_second_run_reuses_classifiers_and_cgma_cache(tmp_path):
    cfg = compose_config(tmp_path, TINY)
    run_experiment(cfg)
    cache = Path(cfg.paths.cache_dir)
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")}
    again = compose_config(tmp_path, TINY)
    run_experiment(again)
    after = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")}
    assert after == stamps  # nothing retrained, nothing recomputed


def test_food11_fixture_tree_end_to_end(tmp_path):
    from tests import fixtures

    fixtures.food11_flat(tmp_path / "data" / "food11")
    cfg = compose_config(
        tmp_path,
        ["+experiment=lsft_food_resnet", "backbone=small_resnet", "dataset.input_size=32", "dataset.num_workers=0",
         "gan=small", "trainer=cpu", "trainer.fast_dev_run=true", "evaluate.auc_images=2", "evaluate.deletion_steps=2"],
    )  # fmt: skip
    results = run_experiment(cfg)
    (combo,) = results["combinations"]
    assert (combo["dataset"], combo["backbone"], combo["n_test"]) == ("food11", "small_resnet", 22)
    assert combo["near_chance"] and combo["flagged"]  # one training batch on noise: flagged, not hidden
    assert math.isfinite(combo["methods"]["gan"]["average_drop"])
    assert (Path(cfg.paths.output_dir) / "results.json").is_file()


def test_missing_dataset_fails_before_any_training(tmp_path):
    from cgmagan.errors import DatasetNotFoundError

    cfg = compose_config(tmp_path, ["+experiment=lsft_food_resnet"])
    with pytest.raises(DatasetNotFoundError, match="food11"):
        run_experiment(cfg)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("override", ["cgma.verify=sometimes", "cgma.order=sideways", "cgma.shard_size=0"])
def test_bad_cgma_settings_fail_before_any_training(tmp_path, override):
    from cgmagan.errors import ConfigError

    cfg = compose_config(tmp_path, [*TINY, override])
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        run_experiment(cfg)
    assert not (tmp_path / "cache").exists()


def run_cli(tmp_path: Path, name: str, overrides: list[str]) -> tuple[Path, str]:
    """``python run.py`` in a subprocess (how DDP really launches), everything inside ``tmp_path``."""
    out = tmp_path / name
    cmd = [sys.executable, str(ROOT / "run.py"), *TINY, *overrides, f"paths.cache_dir={tmp_path / name / 'cache'}",
           f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={out}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return out, done.stdout + done.stderr


def test_full_pipeline_under_ddp_on_two_cpu_processes_matches_a_single_process_cache(tmp_path):
    ddp, _ = run_cli(tmp_path, "ddp", ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"])
    single, _ = run_cli(tmp_path, "single", [])

    worker_log = (ddp / "train_ddp_process_1.log").read_text()
    assert "reused from" in worker_log, "rank 1 loads the classifiers rank 0 trained"
    assert re.search(r"computing [1-9]\d* of \d+ shards \(rank 1 of 2\)", worker_log), "rank 1 computes its share"
    assert tree_bytes(ddp / "cache" / "cgma") == tree_bytes(single / "cache" / "cgma")
    results = json.loads((ddp / "results.json").read_text())
    assert [c["dataset"] + "/" + c["backbone"] for c in results["combinations"]] == [
        "digits/small_vgg", "shapes/small_resnet", "shapes/small_mobilenet"]  # fmt: skip
    assert all(math.isfinite(c["methods"]["gan"]["dice"]) for c in results["combinations"])


def test_multirun_of_ddp_jobs_runs_each_job_once_on_two_processes(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "seed=0,1", *TINY, "combinations.unseen=[]",
           "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", f"paths.cache_dir={tmp_path / 'cache'}",
           f"paths.data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    for job in ("0", "1"):
        assert (sweep / job / "results.json").is_file()
        assert "rank 1 of 2" in (sweep / job / "train_ddp_process_1.log").read_text()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"], "workers start no sweep of their own"
    assert not (tmp_path / "outputs").exists()
