"""The four stages through their entry points: what they return and where they compute."""

from __future__ import annotations

import copy
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from cgmagan.config import resolve_paths
from cgmagan.data import cgma_datamodule
from cgmagan.data.evaluation import CacheMismatchError, EvaluationDataset
from cgmagan.errors import UserError
from cgmagan.models.classifier_module import ClassifierModule
from cgmagan.models.evaluation_module import ExplanationEvaluator
from cgmagan.models.gan_module import CGMAGAN
from cgmagan.runtime import Runtime
from cgmagan.stages.cgma import build_cgma_cache
from cgmagan.stages.classifier import train_classifiers
from cgmagan.stages.evaluate import evaluate
from cgmagan.stages.gan import train_gan
from tests.cache_helpers import NAME, make_datamodule
from tests.conftest import TINY, compose_config
from tests.devices import LAZY, on_lazy_device

ROOT = Path(__file__).resolve().parents[1]


class Stop(Exception):
    """Raised by a spy once it has seen where a stage computes."""


def spy(record: list, observe):
    def spying(*args, **kwargs):
        record.append(observe(*args, **kwargs))
        raise Stop

    return spying


def device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def test_every_stage_computes_on_the_trainer_root_device(tmp_path, monkeypatch):
    """With a trainer whose root device is not the CPU, each stage's first computation sees its
    module and its batch there: nothing is left behind on the CPU."""
    cfg = compose_config(tmp_path / "cpu", TINY)
    resolve_paths(cfg)
    runtime = Runtime.from_config(cfg)
    classifiers = train_classifiers(cfg, runtime)
    cache = build_cgma_cache(cfg, classifiers, runtime)
    gan = train_gan(cfg, cache, runtime)

    lazy = on_lazy_device(compose_config(tmp_path / "lazy", TINY))  # nothing cached there yet
    resolve_paths(lazy)
    on_lazy = Runtime(lazy.trainer)
    assert on_lazy.root_device == LAZY
    seen: dict[str, list] = {}

    monkeypatch.setattr(ClassifierModule, "forward", spy(seen.setdefault("classifier", []),
                                                         lambda self, x: (x.device, device_of(self))))  # fmt: skip
    with pytest.raises(Stop):
        train_classifiers(lazy, on_lazy)
    monkeypatch.setattr(cgma_datamodule, "select_layers", spy(seen.setdefault("cgma", []),
                                                              lambda model, x, **_: (x.device, device_of(model))))  # fmt: skip
    with pytest.raises(Stop):
        build_cgma_cache(lazy, classifiers, on_lazy)
    monkeypatch.setattr(CGMAGAN, "training_step", spy(seen.setdefault("gan", []),
                                                      lambda self, b, i: (b["cgma"].device, device_of(self))))  # fmt: skip
    with pytest.raises(Stop):
        train_gan(lazy, cache, on_lazy)
    monkeypatch.setattr(ExplanationEvaluator, "test_step", spy(
        seen.setdefault("evaluate", []),
        lambda self, b, i, d=0: (b["input"].device, b["cgma"].device, device_of(self.classifiers[d]),
                                 device_of(self.gan), self.mean_train_target.device),
    ))  # fmt: skip
    with pytest.raises(Stop):
        evaluate(lazy, gan, on_lazy)

    assert sorted(seen) == ["cgma", "classifier", "evaluate", "gan"]
    for stage, calls in seen.items():
        assert calls and all(d == LAZY for d in calls[0]), (stage, calls[0])


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
