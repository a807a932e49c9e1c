import json
import logging
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from PIL import Image

from cgmagan.aggregate import aggregate, load_runs
from cgmagan.methods import METHODS, ExplanationMethod
from cgmagan.pipeline import run_experiment
from tests.cache_helpers import tree_bytes
from tests.conftest import FEW_METHODS, TINY, compose_config, one_thread_per_process

ROOT = Path(__file__).resolve().parents[1]

METRICS = ("dice", "soft_dice", "average_drop", "increase_in_confidence", "win_vs_gradcam")
CORE_METHODS = ("gradcam", "gan", "last_cgma", "mean_train_target", "centred_gaussian")


def test_tiny_end_to_end_run_writes_finite_results_for_every_registered_method(tmp_path, monkeypatch, caplog):
    """LSFT here; GSFT runs end to end in the sweep test (tests/test_sweeps.py)."""
    # one more method in the registry: Grad-CAM's own maps, so its scores must be Grad-CAM's
    again = ExplanationMethod("gradcam_again", "Grad-CAM once more (a test entry)", lambda ev, b, c: b["target"].clone())
    monkeypatch.setitem(METHODS, again.name, again)
    cfg = compose_config(tmp_path, [*TINY, "conditioning=lsft"])
    with caplog.at_level(logging.INFO, logger="cgmagan.pipeline"):
        started = time.perf_counter()
        results = run_experiment(cfg)
        wall = time.perf_counter() - started
    # the run ends saying where its time went: every stage, in order, adding up to no more than the whole
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("done in ")]
    parts = re.fullmatch(r"done in (.+): classifiers (.+), CGMA cache (.+), GAN (.+), evaluation (.+)", line)
    assert parts, line
    total, *stages = (seconds_of(text) for text in parts.groups())
    assert sum(stages) <= total + 2 and total <= wall + 1 and stages[0] > 0  # the classifiers trained here
    out = Path(cfg.paths.output_dir)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["combinations"] == results["combinations"]
    table = (out / "results.md").read_text()
    assert table.count("| gan |") == table.count("| gradcam_again |") == 6  # scores and sanity check, 3 combinations
    assert "**gradcam_again**: Grad-CAM once more" in table
    assert (out / "overlays.png").stat().st_size > 10_000
    assert not (out / "INCOMPLETE").exists(), "a finished run carries no INCOMPLETE mark"
    columns = Image.open(out / "overlays.png").text["Description"]
    assert columns == "columns: input, " + ", ".join(METHODS)
    assert table.count("Condition importance on") == 3 and (out / "condition_importance.png").stat().st_size > 5_000
    assert table.count("Sanity check (cascading model randomisation") == 3 and (out / "sanity_check.png").stat().st_size > 5_000
    for combo in results["combinations"]:
        slots = combo["condition_importance"]
        assert slots["n_images"] == combo["n_auc"] == 4 and len(slots["zeros"]) == len(slots["other_image"]) == 8
        assert list(combo["methods"]) == list(METHODS)
        assert combo["methods"]["gradcam_again"] == pytest.approx(combo["methods"]["gradcam"], abs=1e-9)
        check = combo["sanity_check"]  # model randomisation: every method, a step per conv/linear layer
        assert check["n_images"] == 4 and list(check["spearman"]) == list(METHODS)
        assert all(len(v) == len(check["layers"]) >= 5 for v in check["spearman"].values())
        assert check["spearman"]["centred_gaussian"] == pytest.approx([1.0] * len(check["layers"]), abs=1e-4)  # the control
        assert not check["passes"]["centred_gaussian"] and check["spearman"]["gradcam_again"] == check["spearman"]["gradcam"]
    kinds = [(c["dataset"], c["backbone"], c["seen"], c["kind"]) for c in results["combinations"]]
    assert kinds == [("digits", "small_vgg", True, "seen"), ("shapes", "small_resnet", True, "seen"),
                     ("shapes", "small_mobilenet", False, "unseen_backbone")]  # fmt: skip
    for combo in results["combinations"]:
        assert 0 <= combo["classifier_accuracy"] <= 1 and 0 <= combo["zero_target_share"] <= 1
        for method in CORE_METHODS:
            for metric in METRICS:
                value = combo["methods"][method][metric]
                assert math.isfinite(value), (combo["dataset"], method, metric)
        gradcam = combo["methods"]["gradcam"]
        assert gradcam["win_vs_gradcam"] == 50.0 and gradcam["dice"] == 1.0
        assert "pointing_game" in combo["methods"]["gan"] or combo["dataset"] == "digits"


def seconds_of(text: str) -> int:
    """'13 s' -> 13, '4 min 5 s' -> 245."""
    found = re.fullmatch(r"(?:(\d+) min )?(\d+) s", text)
    assert found, text
    return int(found.group(1) or 0) * 60 + int(found.group(2))


def test_a_rerun_of_a_finished_job_is_skipped_and_a_new_run_reuses_classifiers_and_cgma_cache(tmp_path):
    cfg = compose_config(tmp_path, [*TINY, *FEW_METHODS])
    first = run_experiment(cfg)
    results_json = Path(cfg.paths.output_dir) / "results.json"
    written = results_json.stat().st_mtime_ns
    cache = Path(cfg.paths.cache_dir)
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")}

    # the same job in the same folder (an interrupted sweep rerun): its results, nothing recomputed
    assert run_experiment(compose_config(tmp_path, [*TINY, *FEW_METHODS]))["combinations"] == first["combinations"]
    assert results_json.stat().st_mtime_ns == written
    # another setting is another job: it runs, on the cached classifiers and CGMAs
    changed = run_experiment(compose_config(tmp_path, [*TINY, *FEW_METHODS, "evaluate.deletion_steps=2"]))
    assert results_json.stat().st_mtime_ns != written and changed["job_fingerprint"] != first["job_fingerprint"]
    assert changed["combinations"][0]["methods"]["gradcam"]["deletion_auc"] != first["combinations"][0]["methods"]["gradcam"]["deletion_auc"]
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


@pytest.mark.parametrize("override", ["cgma.verify=sometimes", "cgma.order=sideways", "cgma.shard_size=0", "gan.map_size=7",
                                      "gan.lambda_adv=-1", "gan.ema_decay=1.5", "cgma.cumulative=sometimes",
                                      "evaluate.methods_other_seeds=[gan]", "evaluate.methods_other_seeds=[gradcam,gam]",
                                      "gan.lr_cut_factor=0"])
def test_bad_settings_fail_before_any_training(tmp_path, override):
    from cgmagan.errors import ConfigError

    cfg = compose_config(tmp_path, [*TINY, override])
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        run_experiment(cfg)
    assert not (tmp_path / "cache").exists()


def run_cli(tmp_path: Path, name: str, overrides: list[str], cache: Path | None = None) -> tuple[Path, str]:
    """``python run.py`` in a subprocess (how DDP really launches), everything inside ``tmp_path``."""
    out = tmp_path / name
    cmd = [sys.executable, str(ROOT / "run.py"), *TINY, *overrides, f"paths.cache_dir={cache or out / 'cache'}",
           f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={out}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return out, done.stdout + done.stderr


def numbers(node, prefix: str = "") -> dict[str, float]:
    """Every number in nested dicts and lists, by its path."""
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in numbers(value, f"{prefix}/{key}").items()}
    if isinstance(node, list):
        return {k: v for i, value in enumerate(node) for k, v in numbers(value, f"{prefix}/{i}").items()}
    return {prefix: node}


RANK_STATISTICS = {"spearman": "n_test", "randomisation_spearman": None}  # per-image means of Spearman's rho


def one_swap(pixels: int, images: int) -> float:
    """How far a mean of per-image Spearman correlations moves when two pixels of adjacent rank in
    one image trade places (a 1e-7 change can do that to near-equal pixels): Σd² changes by
    2|a - b| <= 2(P - 1), so rho = 1 - 6Σd² / (P(P² - 1)) by at most 12 / (P(P + 1)), over N images."""
    return 12 / (pixels * (pixels + 1) * images)


# under DDP: the cached maps, the GAN, the learned baseline, a CAM of the grad-cam package (gradients
# on each rank; its rank statistics the most fragile) and the control; the other package CAMs and
# Score-CAM are per-image functions of the same kind (every method runs end to end elsewhere)
DDP_METHODS = "evaluate.methods=[gradcam,gan,last_cgma,linear_cgma,gradcam_pp,centred_gaussian]"


def test_ddp_on_two_cpu_processes_computes_the_cache_and_the_metrics_of_one_process(tmp_path):
    with one_thread_per_process():  # both layouts run the same convolution kernels
        single, _ = run_cli(tmp_path, "single", [DDP_METHODS, "evaluate.sanity_images=2"])
        first = json.loads((single / "results.json").read_text())
        cache = single / "cache"
        reference = tree_bytes(cache / "cgma")
        shutil.rmtree(cache / "cgma")  # recomputed by both ranks from the same classifiers
        ddp, _ = run_cli(tmp_path, "ddp", [DDP_METHODS, "evaluate.sanity_images=2", "trainer=ddp", "trainer.accelerator=cpu",
                                           "trainer.devices=2", f"gan.checkpoint={first['gan_checkpoint']}"], cache=cache)  # fmt: skip

    worker_log = (ddp / "train_ddp_process_1.log").read_text()
    assert "reused from" in worker_log and "training classifier" not in worker_log
    assert re.search(r"computing [1-9]\d* of \d+ shards \(rank 1 of 2\)", worker_log), "rank 1 computes its shards"
    assert re.search(r"rank 1 of 2 scores [1-9]\d* of \d+ test images", worker_log), "rank 1 scores its images"
    assert "sanity check: rank 1 of 2 checks combinations shapes/small_resnet" in worker_log, "and checks its combinations"
    assert tree_bytes(cache / "cgma") == reference
    second = json.loads((ddp / "results.json").read_text())
    assert second["gan_checkpoint"] == first["gan_checkpoint"]
    pixels = first["config"]["cgma"]["map_size"] ** 2
    for one, two in zip(first["combinations"], second["combinations"], strict=True):
        assert (one["n_test"], one["n_auc"]) == (two["n_test"], two["n_auc"]) == (24, 4)
        assert one["methods"].keys() == two["methods"].keys()
        assert two["sanity_check"] == one["sanity_check"]  # rank 0's alone, on the same thread count: exact
        assert numbers(two["condition_importance"]) == pytest.approx(numbers(one["condition_importance"]), abs=1e-6)
        for method, scores in one["methods"].items():
            assert scores.keys() == two["methods"][method].keys()
            for key, value in scores.items():
                if key in RANK_STATISTICS:  # a rank 1e-7 away can trade places with its neighbour in one image
                    images = one[RANK_STATISTICS[key]] if RANK_STATISTICS[key] else one["sanity_check"]["n_images"]
                    tolerance = {"abs": one_swap(pixels, images)}
                else:  # float32 sums over a rank's half of the batch: equal to ~1e-6 of the value (percentages reach 100)
                    tolerance = {"rel": 1e-5, "abs": 1e-5}
                assert two["methods"][method][key] == pytest.approx(value, **tolerance), (one["dataset"], method, key)


@pytest.mark.slow  # DDP itself: test_ddp_on_two_cpu_processes_...; this adds the multirun around it
def test_multirun_of_ddp_jobs_runs_each_job_once_on_two_processes(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "seed=0,1", *TINY, *FEW_METHODS, "combinations.unseen=[]",
           "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", f"paths.cache_dir={tmp_path / 'cache'}",
           f"paths.data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    for job in ("0", "1"):  # each seed its own classifiers: trained, cached and explained by both ranks
        assert (sweep / job / "results.json").is_file()
        worker_log = (sweep / job / "train_ddp_process_1.log").read_text()
        assert "training classifier digits/small_vgg for 1 epoch on 2 process(es)" in worker_log
        assert re.search(r"computing [1-9]\d* of \d+ shards \(rank 1 of 2\)", worker_log)
        assert "rank 1 of 2 scores" in worker_log
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"], "workers start no sweep of their own"
    table = aggregate(load_runs(sweep))  # the two seeds of one variant, read back from the sweep
    runs = [json.loads((sweep / job / "results.json").read_text()) for job in ("0", "1")]
    for combo in runs[0]["combinations"]:
        (variant,) = table[f"{combo['dataset']}/{combo['backbone']} (seen)"].values()  # one variant, two seeds
        mean, _, n = variant["gan"]["dice"]
        expected = [r["methods"]["gan"]["dice"] for run in runs for r in run["combinations"] if r["dataset"] == combo["dataset"]]
        assert n == 2 and mean == pytest.approx(sum(expected) / 2)
    assert not (tmp_path / "outputs").exists()


def test_a_trainer_that_cannot_run_here_is_a_config_error_before_any_work(tmp_path):
    from cgmagan.errors import ConfigError

    cfg = compose_config(tmp_path, [*TINY, "trainer=gpu"] if not torch.cuda.is_available() else [*TINY, "trainer.devices=99"])
    with pytest.raises(ConfigError, match="the trainer config cannot run here") as err:
        run_experiment(cfg)
    assert torch.cuda.is_available() or "No GPU is visible here" in str(err.value) and "trainer=cpu" in str(err.value)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("override,message", [
    ("cgma.k=9", "cgma.k=9 but digits/small_vgg has 8 conv layers to average: set cgma.k to 8 or less"),
    ("cgma.exclude_target_layer=true", "digits/small_vgg has 7 conv layers to average \\(the target excluded\\)"),
    ("dataset.input_size=16", "digits/small_vgg: the target conv layer \\(features.24\\) outputs 2x2"),
])  # fmt: skip
def test_a_network_that_cannot_be_explained_as_configured_stops_before_any_training(tmp_path, override, message):
    from cgmagan.errors import ConfigError

    cfg = compose_config(tmp_path, [*TINY, override])
    with pytest.raises(ConfigError, match=message):
        run_experiment(cfg)
    assert not (tmp_path / "cache" / "classifiers").exists()


def test_a_run_that_stops_midway_is_marked_incomplete_with_how_to_continue(tmp_path, monkeypatch):
    import cgmagan.pipeline

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill during GAN training would leave it

    monkeypatch.setattr(cgmagan.pipeline, "train_gan", killed)
    cfg = compose_config(tmp_path, [*TINY, "combinations.unseen=[]"])
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg)
    mark = (Path(cfg.paths.output_dir) / "INCOMPLETE").read_text()
    assert "not finished" in mark and f"hydra.run.dir={cfg.paths.output_dir}" in mark
    assert not (Path(cfg.paths.output_dir) / "results.json").exists()


def test_condition_importance_does_not_depend_on_the_batch_size(tmp_path, finished_run):
    """'Another image's CGMAs' come from a seeded derangement of the AUC images, fixed before any
    batch is made: evaluating the same GAN in batches of 1, 4 or 64 gives the same numbers (a roll
    within the batch compared an image with itself in a batch of one)."""
    out, results = finished_run
    cache = results["config"]["paths"]["cache_dir"]
    importance = []
    for batch_size in (1, 4, 64):
        cfg = compose_config(tmp_path / str(batch_size), [*TINY, f"evaluate.batch_size={batch_size}", "evaluate.methods=[gradcam,gan]",
                                                          "evaluate.sanity_images=0", "evaluate.road_images=0",
                                                          f"gan.checkpoint={results['gan_checkpoint']}"])  # fmt: skip
        with open_dict(cfg):
            cfg.paths.cache_dir = cache  # the finished run's classifiers and CGMAs
        importance.append([c["condition_importance"] for c in run_experiment(cfg)["combinations"]])
    assert importance[0][0]["n_images"] == 4
    for other in importance[1:]:
        assert numbers(other) == pytest.approx(numbers(importance[0]), abs=1e-6)
    changes = [s["mean_abs_change"] for s in importance[0][0]["other_image"]]
    assert max(changes) > 0, "another image's CGMAs change the map: no image is paired with itself"


def test_gan_seeds_share_the_classifiers_and_cgmas_of_one_classifier_seed(tmp_path):
    """classifier.seed fixed, the GAN's seed varied (how the recipes sweep): the second seed trains
    no classifier and computes no CGMA, explains the same test images, trains another GAN, and scores
    only evaluate.methods_other_seeds (the classifier seed's job scores evaluate.methods)."""
    base = [*TINY, *FEW_METHODS, "combinations.train=[digits/small_vgg]", "combinations.unseen=[]", "classifier.seed=0",
            "evaluate.methods_other_seeds=[gradcam,gan]"]  # fmt: skip
    first = run_experiment(compose_config(tmp_path / "a", [*base, "seed=0"]))
    cache = Path(first["config"]["paths"]["cache_dir"])
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")}
    cfg = compose_config(tmp_path / "b", [*base, "seed=1"])
    with open_dict(cfg):
        cfg.paths.cache_dir = str(cache)
    second = run_experiment(cfg)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")} == stamps
    (a,), (b,) = first["combinations"], second["combinations"]
    assert (first["seed"], second["seed"], first["classifier_seed"], second["classifier_seed"]) == (0, 1, 0, 0)
    assert a["classifier_checkpoint"] == b["classifier_checkpoint"] and a["methods"]["gradcam"] == b["methods"]["gradcam"]
    assert a["methods"]["gan"]["mae"] != b["methods"]["gan"]["mae"], "another GAN"
    assert list(a["methods"]) == ["gradcam", "gan", "last_cgma"] and list(b["methods"]) == ["gradcam", "gan"]
    by_default = compose_config(tmp_path / "c", [*TINY, "seed=1"])
    assert by_default.classifier.seed == 1 and by_default.dataset.seed == 1, "unless fixed, each seed its own classifiers"
