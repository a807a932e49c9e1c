"""The four stages through their entry points: what they return and where they compute."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from cgmagan.config import resolve_paths
from cgmagan.data.evaluation import CacheMismatchError, EvaluationDataset
from cgmagan.errors import UserError
from cgmagan.explanation import explain
from cgmagan.methods import METHODS
from cgmagan.runtime import Runtime
from cgmagan.stages.cgma import build_cgma_cache
from cgmagan.stages.classifier import train_classifiers
from cgmagan.stages.evaluate import evaluate
from cgmagan.stages.gan import train_gan
from tests.cache_helpers import NAME, make_datamodule
from tests.conftest import TINY, compose_config
from tests.devices import DEVICE, EmulatedDevice, on_emulated_device

ROOT = Path(__file__).resolve().parents[1]


def device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


# every method and metric, on few images: each op runs through the emulated device's check
ON_DEVICE = [*TINY, "evaluate.max_images=8", "evaluate.auc_images=2", "evaluate.road_images=1", "evaluate.sanity_images=1",
             "evaluate.deletion_steps=2", "evaluate.road_percentiles=[50]"]  # fmt: skip


def test_every_stage_runs_end_to_end_on_an_accelerator_without_mixing_its_tensors_with_the_cpus(tmp_path):
    """Classifier training, the CGMA precompute (Grad-CAM forward and backward), the GAN's training
    and validation steps, every method and metric of the evaluation, the sanity check and
    ``explain`` run on a device that is not the CPU and checks every op as a GPU does: a tensor
    made on the CPU and mixed with the device's fails here as it would on a GPU."""
    cfg = on_emulated_device(compose_config(tmp_path, ON_DEVICE))
    resolve_paths(cfg)
    with EmulatedDevice() as device:
        runtime = Runtime(cfg.trainer)
        assert runtime.root_device == DEVICE
        ops, counted = {}, [device.ops]

        def count(stage: str) -> None:  # the device ops a stage ran
            ops[stage], counted[0] = device.ops - counted[0], device.ops

        classifiers = train_classifiers(cfg, runtime)
        count("classifier")
        cache = build_cgma_cache(cfg, classifiers, runtime)
        count("cgma")
        gan = train_gan(cfg, cache, runtime)
        count("gan")
        results = evaluate(cfg, gan, runtime).results
        count("evaluate")
        classifier = classifiers.all[0].module.net
        images = classifiers.all[0].data.dataset("test")[0][0][None].repeat(2, 1, 1, 1)  # on the CPU, as a user has them
        out = explain(classifier, images, gan=gan.module)
        count("explain")
    assert all(n > 100 for n in ops.values()), ops  # every stage computed on the device
    assert device_of(classifier) == device_of(gan.module) == out.gan.device == out.cgmas.device == DEVICE
    assert out.gan.shape == (2, 16, 16) and torch.isfinite(out.gan.cpu()).all()
    for combo in results["combinations"]:
        assert list(combo["methods"]) == list(METHODS) and combo["n_auc"] == 2 and combo["n_road"] == 1
        assert all(math.isfinite(v) for row in combo["methods"].values() for v in row.values()), combo["dataset"]
        assert list(combo["sanity_check"]["spearman"]) == list(METHODS)


def test_stage_results_carry_what_the_next_stage_needs(tmp_path):
    cfg = compose_config(tmp_path, [*TINY, "combinations.unseen=[]", "combinations.train=[shapes/small_resnet]"])
    resolve_paths(cfg)
    runtime = Runtime.from_config(cfg)
    classifiers = train_classifiers(cfg, runtime)
    (clf,) = classifiers.all
    assert clf.name == "shapes/small_resnet" and not clf.reused and clf.checkpoint.is_file()
    assert not clf.module.training and not any(p.requires_grad for p in clf.module.parameters())
    cache = build_cgma_cache(cfg, classifiers, runtime)
    assert cache.datamodule.complete and len(cache.test_rows(clf.name)["target"]) == cfg.cgma.max_per_split == 48

    again = train_classifiers(copy.deepcopy(cfg), runtime)
    assert again.all[0].reused and again.all[0].checkpoint_sha256 == clf.checkpoint_sha256
    with open_dict(cfg):
        cfg.gan.checkpoint = str(tmp_path / "missing.ckpt")
    with pytest.raises(UserError, match="missing.ckpt does not exist"):
        train_gan(cfg, cache, runtime)


def test_evaluation_items_refuse_a_cache_row_of_another_image(tmp_path):
    dm = make_datamodule(str(tmp_path))
    dm.prepare_data()
    data = dm.sources[NAME].data
    rows, indices = dm.arrays(NAME, "test"), dm.indices(NAME, "test")
    every = np.arange(16)
    good = EvaluationDataset(NAME, data.dataset("test"), rows, indices, every[::-1], every < 4)
    item = good[3]
    assert (int(item["index"]), bool(item["in_auc"])) == (3, True) and not good[4]["in_auc"]
    torch.testing.assert_close(item["cgma"], torch.from_numpy(np.array(rows["cgma"][12])))  # row evaluated[3] = 12
    assert item["input"].shape == (3, 32, 32) and item["cgma"].shape == (4, 16, 16)
    swapped = EvaluationDataset(NAME, data.dataset("val"), rows, indices, every, every < 4)  # other images
    with pytest.raises(CacheMismatchError, match="row 0 does not hold test image 0"):
        swapped[0]
    with pytest.raises(CacheMismatchError, match="holds 16 rows, but 15 dataset items"):
        EvaluationDataset(NAME, data.dataset("test"), rows, indices[:15], every, every < 4)


def test_the_wheel_ships_every_subpackage_and_the_config_tree(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)  # fmt: skip
    (wheel,) = tmp_path.glob("cgmagan-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "cgmagan").rglob("*.py")}
    configs = {"cgmagan/" + str(p.relative_to(ROOT)) for p in (ROOT / "conf").rglob("*.yaml")}
    assert sources <= names, sorted(sources - names)
    assert configs <= names and "cgmagan/conf/config.yaml" in names, sorted(configs - names)


def test_fast_dev_run_caches_cgmas_of_one_precompute_batch_per_split(tmp_path):
    cfg = compose_config(tmp_path, [*TINY, "combinations.unseen=[]", "trainer.fast_dev_run=true",
                                    "cgma.max_per_split=null", "cgma.batch_size=8"])  # fmt: skip
    resolve_paths(cfg)
    runtime = Runtime.from_config(cfg)
    cache = build_cgma_cache(cfg, train_classifiers(cfg, runtime), runtime)
    counts = {key: m["count"] for key, m in cache.datamodule.manifests.items()}
    assert len(counts) == 6 and set(counts.values()) == {8}, counts


def test_the_classifier_cache_key_holds_the_training_batch_not_the_loader_processes(tmp_path):
    """Another dataset.batch_size trains another classifier (under DDP too: it is all processes' batch together, so the
    number of processes is not in the key); loader processes change nothing."""
    from cgmagan.combinations import resolve_combinations
    from cgmagan.stages.classifier import classifier_key

    def key(*overrides):
        cfg = compose_config(tmp_path, list(overrides))
        train, unseen = resolve_combinations(cfg)
        combo = next(c for c in train + unseen if c.dataset == cfg.dataset.name)  # the one the `dataset` overrides reach
        return classifier_key(combo, cfg, combo.datamodule())

    one = key()
    assert key("dataset.batch_size=32") != one
    assert key("dataset.num_workers=2") == one == key("trainer=ddp", "trainer.devices=4")
