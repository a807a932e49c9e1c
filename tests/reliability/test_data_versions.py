"""Promise: caches are keyed by the data's content. Another version of a file dataset (one image
changed) gets another classifier and other CGMAs, never the old ones."""

from pathlib import Path

import numpy as np
from PIL import Image

from cgmagan.config import resolve_paths
from cgmagan.runtime import Runtime
from cgmagan.stages.cgma import build_cgma_cache
from cgmagan.stages.classifier import train_classifiers
from tests import fixtures
from tests.conftest import compose_config

FOOD11 = ["+experiment=lsft_food_resnet", "backbone=small_resnet", "dataset.input_size=32", "dataset.num_workers=0",
          "gan=small", "trainer=cpu", "trainer.fast_dev_run=true", "cgma.batch_size=8"]  # fmt: skip


def _classifier_and_cgma_folders(tmp_path: Path) -> tuple[set[str], set[str]]:
    cfg = compose_config(tmp_path, FOOD11)
    resolve_paths(cfg)
    runtime = Runtime.from_config(cfg)
    build_cgma_cache(cfg, train_classifiers(cfg, runtime), runtime)
    cache = Path(cfg.paths.cache_dir)
    return ({p.name for p in (cache / "classifiers").iterdir() if p.is_dir()},
            {p.name for p in (cache / "cgma").iterdir() if p.is_dir()})


def test_changing_one_image_of_a_file_dataset_invalidates_the_classifier_and_the_cgmas(tmp_path):
    fixtures.food11_flat(tmp_path / "data" / "food11")
    classifiers, cgmas = _classifier_and_cgma_folders(tmp_path)
    assert _classifier_and_cgma_folders(tmp_path) == (classifiers, cgmas), "the same data: everything reused"

    image = sorted((tmp_path / "data" / "food11" / "evaluation").glob("*.jpg"))[0]
    Image.fromarray(np.zeros((20, 23, 3), np.uint8)).save(image)  # a new version of one test image
    new_classifiers, new_cgmas = _classifier_and_cgma_folders(tmp_path)
    assert len(new_classifiers - classifiers) == 1, "retrained under a new key"
    assert len(new_cgmas - cgmas) == 3, "every split's CGMAs recomputed for the new data"
