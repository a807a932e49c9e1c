"""The paper's six datasets, read from fixture trees in their published layouts."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cgmagan.data.kaggle import Animals10DataModule, ChineseMNISTDataModule, Food11DataModule
from cgmagan.data.torchvision_sets import CIFAR10DataModule, EMNISTDataModule, MNISTDataModule
from cgmagan.errors import DatasetNotFoundError
from tests import fixtures


def sizes(dm):
    return [len(dm.dataset(s)) for s in ("train", "val", "test")]


@pytest.mark.parametrize("layout", [fixtures.food11_flat, fixtures.food11_by_class])
def test_food11_both_layouts(tmp_path, layout):
    layout(tmp_path / "food11")
    dm = Food11DataModule(str(tmp_path / "food11"), input_size=24)
    dm.setup()
    assert dm.num_classes == 11 and dm.class_names[6] == "Noodles-Pasta"
    corrupt = 1 if layout is fixtures.food11_flat else 0
    assert sizes(dm) == [22, 22, 22] and len(dm.skipped) == corrupt
    image, label = dm.dataset("train")[0]
    assert image.shape == (3, 24, 24) and 0 <= image.min() and image.max() <= 1
    labels = sorted({y for _, y in dm.dataset("test").items})
    assert labels == list(range(11))


def test_animals10_english_names_stratified_deterministic_split(tmp_path):
    fixtures.animals10(tmp_path / "animals10")
    dm = Animals10DataModule(str(tmp_path / "animals10"), input_size=16, fractions=(0.6, 0.2, 0.2), seed=3)
    dm.setup()
    assert dm.class_names == ["dog", "horse", "elephant", "butterfly", "chicken", "cat", "cow", "sheep", "spider", "squirrel"]
    assert sizes(dm) == [60, 20, 20] and len(dm.skipped) == 1
    cats = [p for p, y in dm.dataset("train").items if y == 5]
    assert all(p.parent.name == "gatto" for p in cats)
    again = Animals10DataModule(str(tmp_path / "animals10"), input_size=16, fractions=(0.6, 0.2, 0.2), seed=3)
    again.setup()
    assert again.dataset("test").items == dm.dataset("test").items
    other = Animals10DataModule(str(tmp_path / "animals10"), input_size=16, fractions=(0.6, 0.2, 0.2), seed=4)
    other.setup()
    assert other.dataset("test").items != dm.dataset("test").items
    rgba_as_rgb = dm.dataset("train")[0][0]
    assert rgba_as_rgb.shape == (3, 16, 16)


def test_chinese_mnist_codes_are_15_classes(tmp_path):
    fixtures.chinese_mnist(tmp_path / "chinese_mnist")
    dm = ChineseMNISTDataModule(str(tmp_path / "chinese_mnist"), input_size=32, fractions=(0.6, 0.2, 0.2))
    dm.setup()
    assert dm.num_classes == 15 and dm.class_names[0] == "0 零" and dm.class_names[14] == "100000000 亿"
    assert sizes(dm) == [90, 30, 30]
    path, label = dm.dataset("train").items[0]
    assert int(path.stem.split("_")[-1]) == label + 1
    assert dm.dataset("val")[0][0].shape == (1, 32, 32)


@pytest.mark.parametrize(
    "module,writer,classes,train_val_test",
    [(MNISTDataModule, fixtures.mnist, 10, (50, 10, 20)), (EMNISTDataModule, fixtures.emnist, 47, (94, 47, 47)),
     (CIFAR10DataModule, fixtures.cifar10, 10, (90, 10, 20))],
)  # fmt: skip
def test_torchvision_datasets_official_test_split(tmp_path, module, writer, classes, train_val_test):
    writer(tmp_path)
    kwargs = {"val_fraction": 0.1 if module is not EMNISTDataModule else 1 / 3}
    dm = module(str(tmp_path), input_size=32, **kwargs)
    dm.setup()
    assert dm.num_classes == classes
    assert tuple(sizes(dm)) == train_val_test
    x, _ = dm.dataset("test")[0]
    assert x.shape == (dm.channels, 32, 32)
    assert set(dm.dataset("train").labels.tolist()) == set(range(classes))


ALL = [
    (Food11DataModule, "food11", "training/"),
    (Animals10DataModule, "animals10", "raw-img/"),
    (ChineseMNISTDataModule, "chinese_mnist", "chinese_mnist.csv"),
    (MNISTDataModule, "", "MNIST/raw/"),
    (EMNISTDataModule, "", "EMNIST/raw/"),
    (CIFAR10DataModule, "", "cifar-10-batches-py/"),
]


@pytest.mark.parametrize("module,sub,expected", ALL)
def test_missing_dataset_names_the_folder_and_the_layout(tmp_path, module, sub, expected):
    root = tmp_path / sub if sub else tmp_path
    (tmp_path / "stray.txt").write_text("not a dataset")
    dm = module(str(root), input_size=32)
    with pytest.raises(DatasetNotFoundError) as err:
        dm.setup()
    message = str(err.value)
    assert str(root) in message and expected in message and "Expected layout" in message


@pytest.mark.parametrize("per_class", [1, 2])
def test_a_dataset_too_small_for_its_splits_says_so_with_the_counts(tmp_path, per_class):
    from cgmagan.errors import DatasetTooSmallError

    fixtures.animals10(tmp_path / "animals10", per_class=per_class)
    dm = Animals10DataModule(str(tmp_path / "animals10"), input_size=16, fractions=(0.8, 0.1, 0.1))
    with pytest.raises(DatasetTooSmallError, match=r"was found under .*too small for its splits: train \d+, (val 0, test \d+|val \d+, test 0) images"):
        dm.setup()


@pytest.mark.parametrize("dtype,white,suffix", [(np.uint16, 65535, "png"), (np.int32, 65535, "tif"), (np.float32, 1.0, "tif")])
def test_deep_grey_images_load_with_their_own_white_not_clipped(tmp_path, dtype, white, suffix):
    from PIL import Image

    from cgmagan.data.files import load_image

    ramp = np.tile(np.linspace(0, white, 32), (32, 1))  # black to white, left to right
    path = tmp_path / f"ramp.{suffix}"
    Image.fromarray(ramp.astype(dtype)).save(path)  # 16-bit PNG, 32-bit integer and float TIFF
    with Image.open(path) as img:
        assert img.mode.startswith("I") or img.mode == "F"
    for channels in (1, 3):
        x = load_image(path, channels, 32)
        assert x.shape == (channels, 32, 32)
        assert x[:, :, 0].max() < 0.01 and x[:, :, -1].min() > 0.99, "a ramp, not a white page"
        assert torch.allclose(x[0, 0], torch.linspace(0, 1, 32), atol=0.02)


def test_a_split_of_blank_images_is_warned_about(tmp_path, caplog):
    from PIL import Image

    from cgmagan.data.files import ImageFileDataset, warn_if_constant

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"blank{i}.png")
        Image.fromarray(np.full((8, 8), 200, np.uint8), "L").save(paths[-1])
    with caplog.at_level("WARNING"):
        assert warn_if_constant(ImageFileDataset([(p, 0) for p in paths], 1, 8), "blank train")
    assert "single flat value" in caplog.text
    noisy = tmp_path / "noisy.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), "L").save(noisy)
    assert not warn_if_constant(ImageFileDataset([(noisy, 0), *((p, 0) for p in paths)], 1, 8), "mixed")


def test_a_file_datasets_fingerprint_changes_with_one_image_and_not_with_a_rerun(tmp_path):
    import os

    fixtures.food11_flat(tmp_path / "food11")

    def fingerprint():
        dm = Food11DataModule(str(tmp_path / "food11"), input_size=24)
        dm.setup()
        return dm.fingerprint(), dm

    first, dm = fingerprint()
    assert fingerprint()[0] == first
    path = dm.dataset("test").items[3][0]
    path.write_bytes(path.read_bytes() + b"\0")  # another version of one image
    changed, _ = fingerprint()
    assert changed != first
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # same bytes, touched: counts as changed
    assert fingerprint()[0] != changed


def test_image_checks_are_remembered_and_a_changed_file_is_checked_again(tmp_path, monkeypatch):
    from cgmagan.data import files

    fixtures.food11_flat(tmp_path / "food11")
    decoded = []
    real = files.readable
    monkeypatch.setattr(files, "readable", lambda p: decoded.append(p) or real(p))

    def setup():
        decoded.clear()
        dm = Food11DataModule(str(tmp_path / "food11"), input_size=24, checked_dir=str(tmp_path / "checks"))
        dm.setup()
        return dm

    first = setup()
    assert len(decoded) == 67 and len(first.skipped) == 1  # 66 images and the corrupt one, each decoded once
    again = setup()
    assert decoded == [] and again.skipped == first.skipped  # the rerun decodes nothing, same verdicts
    assert sizes(again) == sizes(first)
    fixed = first.skipped[0]
    fixed.write_bytes((tmp_path / "food11" / "training" / "0_0.jpg").read_bytes())  # the damaged file replaced
    third = setup()
    assert decoded == [fixed] and third.skipped == [] and sizes(third)[0] == sizes(first)[0] + 1


@pytest.mark.parametrize("module,writer", [(MNISTDataModule, fixtures.mnist), (CIFAR10DataModule, fixtures.cifar10)])
def test_torchvision_images_stay_at_their_stored_size_and_each_is_upsampled_when_read(tmp_path, module, writer):
    """At the paper's 256x256 the whole of CIFAR-10 upsampled is 39 GB: the stored uint8 file is
    kept, shared by train and validation, and an item is resized alone, to what resizing the whole
    array gave."""
    writer(tmp_path)
    dm = module(str(tmp_path), input_size=256)
    dm.setup()
    train, val = dm.dataset("train"), dm.dataset("val")
    assert train.pixels is val.pixels and train.pixels.dtype in (np.uint8, torch.uint8)
    assert tuple(train.pixels.shape[1:3]) in ((28, 28), (32, 32))
    j = int(train.indices[3])
    stored = torch.as_tensor(np.asarray(train.pixels[j])).float().div(255)
    stored = stored[None] if stored.ndim == 2 else stored.permute(2, 0, 1)
    expected = F.interpolate(stored[None], size=256, mode="bilinear", align_corners=False)[0].clamp(0, 1)
    x, label = train[3]
    assert x.shape == (dm.channels, 256, 256) and label == int(train.labels[3])
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)


def test_a_torchvision_test_split_reads_only_the_test_file_and_release_forgets_what_was_read(tmp_path):
    fixtures.mnist(tmp_path)
    dm = MNISTDataModule(str(tmp_path), input_size=32)
    assert len(dm.dataset("test")) == 20 and set(dm._files) == {False}  # the training file is not read
    digest = dm.fingerprint()
    assert set(dm._files) == {True, False}
    dm.release()
    assert dm._files == {} and dm.splits == {} and dm.fingerprint() == digest
    assert len(dm.dataset("train")) == 50 and MNISTDataModule(str(tmp_path), input_size=32).fingerprint() == digest
    other_seed = MNISTDataModule(str(tmp_path), input_size=32, seed=1)  # another validation split
    assert other_seed.fingerprint() != digest
    images = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    raw = bytearray(images.read_bytes())
    raw[-1] ^= 0xFF  # one pixel of the last test image
    images.write_bytes(bytes(raw))
    assert MNISTDataModule(str(tmp_path), input_size=32).fingerprint() != digest


def test_the_classifier_and_cgma_stages_hold_one_combinations_data_at_a_time(tmp_path, monkeypatch):
    from cgmagan.config import resolve_paths
    from cgmagan.data.torchvision_sets import TorchvisionDataModule
    from cgmagan.runtime import Runtime
    from cgmagan.stages.cgma import build_cgma_cache
    from cgmagan.stages.classifier import train_classifiers
    from tests.conftest import TINY, compose_config

    fixtures.mnist(tmp_path / "data")
    tiny = [o for o in TINY if "fractions" not in o]  # MNIST has its official test split
    cfg = compose_config(tmp_path, [*tiny, "dataset=mnist", "dataset.input_size=32", "dataset.num_workers=0",
                                    "combinations.train=[mnist/small_vgg]", "combinations.unseen=[mnist/small_resnet]"])  # fmt: skip
    resolve_paths(cfg)
    modules, held = [], []
    read = TorchvisionDataModule._file

    def reading(self, train):  # how many datamodules hold a file whenever one is read
        if self not in modules:
            modules.append(self)
        out = read(self, train)
        held.append(sum(bool(m._files) for m in modules))
        return out

    monkeypatch.setattr(TorchvisionDataModule, "_file", reading)
    runtime = Runtime.from_config(cfg)
    classifiers = train_classifiers(cfg, runtime)
    build_cgma_cache(cfg, classifiers, runtime)
    assert len(modules) == 2 and len(held) > 4 and max(held) == 1, held
    assert all(not m._files for m in modules), "released when the stage is done with them"
