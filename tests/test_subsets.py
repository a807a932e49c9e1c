"""Subsets (cgma.max_per_split, evaluate.max_images, evaluate.auc_images) are seeded stratified
samples, never the first N rows: file datasets list their images in class order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cgmagan.backbones import build_backbone
from cgmagan.combinations import Combination
from cgmagan.data.base import stratified_subset
from cgmagan.data.cgma_datamodule import CGMADataModule, CGMASource
from cgmagan.data.kaggle import Food11DataModule
from cgmagan.stages.cgma import CGMACache
from cgmagan.stages.classifier import Classifiers, TrainedClassifier
from cgmagan.stages.evaluate import test_items as evaluation_items
from tests import fixtures

# Food-11's training split, class by class, as its files are sorted
FOOD11_TRAIN = np.repeat(np.arange(11), [994, 429, 1500, 986, 848, 1325, 440, 280, 855, 1500, 709])


def assert_class_mix_matches(subset_labels: np.ndarray, split_labels: np.ndarray) -> None:
    """Every class's count in the subset is within one image of its share of the split."""
    classes = np.arange(split_labels.max() + 1)
    share = np.bincount(split_labels, minlength=len(classes)) * len(subset_labels) / len(split_labels)
    got = np.bincount(subset_labels, minlength=len(classes))
    assert np.all(np.abs(got - share) < 1), (got, share.round(2))


@pytest.mark.parametrize("n", [5000, 200, 11, 3])
def test_stratified_subset_keeps_the_class_mix_and_follows_the_seed(n):
    picked = stratified_subset(FOOD11_TRAIN, n, seed=0)
    assert len(picked) == len(np.unique(picked)) == n and np.all(np.diff(picked) > 0)
    assert_class_mix_matches(FOOD11_TRAIN[picked], FOOD11_TRAIN)
    assert np.array_equal(picked, stratified_subset(FOOD11_TRAIN, n, seed=0))
    assert not np.array_equal(picked, stratified_subset(FOOD11_TRAIN, n, seed=1))
    if n >= 200:  # the first n rows, as subsets used to be, hold a few classes only
        assert len(np.unique(FOOD11_TRAIN[:n])) < 11 == len(np.unique(FOOD11_TRAIN[picked]))


def test_a_subset_as_large_as_the_split_is_the_whole_split():
    assert np.array_equal(stratified_subset(FOOD11_TRAIN[:50], 80, seed=3), np.arange(50))
    assert len(stratified_subset(FOOD11_TRAIN, 0, seed=3)) == 0


def test_cached_and_evaluated_subsets_of_a_class_ordered_dataset_keep_its_class_mix(tmp_path):
    root = fixtures.food11_flat(tmp_path / "food11", per_class=4)  # 44 images per split, files in class order
    data = Food11DataModule(str(root), input_size=32)
    data.setup()
    torch.manual_seed(0)
    net = build_backbone("small_resnet", 3, 11).eval().requires_grad_(False)
    cgma = OmegaConf.create({"k": 4, "order": "forward", "exclude_target_layer": False, "map_size": 16,
                             "batch_size": 16, "shard_size": 8, "max_per_split": 22, "verify": "stat"})  # fmt: skip
    name = "food11/small_resnet"
    dm = CGMADataModule([CGMASource(name, net, data, "fixed")], [name], cgma, str(tmp_path / "cache"), seed=5)
    dm.prepare_data()
    for split in ("train", "val", "test"):
        split_labels = data.labels(split)
        cached = dm.arrays(name, split)["label"].rows(0, 22)
        assert_class_mix_matches(cached, split_labels)
        assert np.array_equal(cached, split_labels[dm.indices(name, split)])
        assert len(np.unique(split_labels[:22])) < 11 == len(np.unique(cached)), "the first 22 rows miss classes"

    combo = Combination("food11", "small_resnet", "seen", OmegaConf.create({}), OmegaConf.create({}))
    clf = TrainedClassifier(combo, data, None, 0.1, tmp_path / "none.ckpt", "fixed", reused=True)
    cache = CGMACache(dm, Classifiers([clf], []))
    items = evaluation_items(clf, cache, OmegaConf.create({"max_images": 11, "auc_images": 3, "road_images": 2}), seed=5)
    evaluated = dm.arrays(name, "test")["label"].rows(0, 22)[items.evaluated]
    assert sorted(evaluated.tolist()) == list(range(11))  # one of each class
    assert items.in_auc.sum() == 3 and len(set(evaluated[items.in_auc].tolist())) == 3
    assert items.in_road.sum() == 2 and not (items.in_road & ~items.in_auc).any()  # ROAD images are AUC images
    assert all(int(items[i]["label"]) == evaluated[i] for i in range(len(items)))  # rows checked against images
