"""The paper's six datasets, read from fixture trees in their published layouts."""

import pytest

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
