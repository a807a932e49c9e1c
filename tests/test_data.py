import numpy as np
import torch

from cgmagan.data.digits import DigitsDataModule
from cgmagan.data.shapes import ShapesDataModule, render_scenes
from cgmagan.data.textures import TexturesDataModule, render_textures


def test_shapes_are_deterministic_and_masks_match_the_objects():
    a = render_scenes(20, 32, seed=5)
    b = render_scenes.__wrapped__(20, 32, seed=5)  # rendered again, not the cached arrays
    c = render_scenes(20, 32, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    images, labels, masks = a
    assert images.shape == (20, 3, 32, 32) and images.min() >= 0 and images.max() <= 1
    assert set(labels.tolist()) <= {0, 1, 2, 3}
    area = masks.mean((1, 2))
    assert (area > 0.02).all() and (area < 0.5).all()


def test_shapes_splits_are_fixed_and_carry_masks():
    dm = ShapesDataModule(32, split_sizes=(30, 10, 12), seed=1)
    dm.setup()
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [30, 10, 12]
    image, label, mask = dm.dataset("test")[0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32) and mask.dtype == torch.bool
    again = ShapesDataModule(32, split_sizes=(30, 10, 12), seed=1)
    again.setup()
    assert torch.equal(again.dataset("test").images, dm.dataset("test").images)
    again.dataset("test").images.zero_()  # the rendering is cached: each datamodule holds its own copy
    assert dm.dataset("test").images.amax() > 0


def test_textures_are_deterministic_with_the_texture_inside_the_mask_only():
    a = render_textures(24, 32, seed=3)
    b = render_textures.__wrapped__(24, 32, seed=3)  # rendered again, not the cached arrays
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    images, labels, masks = a
    assert images.shape == (24, 3, 32, 32) and images.min() >= 0 and images.max() <= 1
    assert set(labels.tolist()) == {0, 1, 2, 3}
    area = masks.mean((1, 2))
    assert (area > 0.08).all() and (area < 0.4).all()
    # two-colour texture inside, smooth background outside: local contrast is far higher in the mask
    contrast = (np.abs(np.diff(images, axis=3))[:, :, 1:] + np.abs(np.diff(images, axis=2))[:, :, :, 1:]).mean(1)
    inside = masks[:, 1:, 1:] & masks[:, :-1, 1:] & masks[:, 1:, :-1]  # [n, 31, 31], both neighbours inside
    outside = ~masks[:, 1:, 1:] & ~masks[:, :-1, 1:] & ~masks[:, 1:, :-1]
    for c, i, o in zip(contrast, inside, outside):
        assert c[i].mean() > 3 * c[o].mean()


def test_textures_splits_are_fixed_carry_masks_and_differ_from_shapes():
    dm = TexturesDataModule(32, split_sizes=(30, 10, 12), seed=1)
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [30, 10, 12]
    image, label, mask = dm.dataset("test")[0]
    assert image.shape == (3, 32, 32) and mask.dtype == torch.bool and dm.num_classes == 4
    assert torch.equal(TexturesDataModule(32, split_sizes=(30, 10, 12), seed=1).dataset("test").images,
                       dm.dataset("test").images)  # fmt: skip
    assert not torch.equal(TexturesDataModule(32, split_sizes=(30, 10, 12), seed=2).dataset("test").images,
                           dm.dataset("test").images)  # fmt: skip


def test_digits_split_is_stratified_disjoint_and_deterministic():
    dm = DigitsDataModule(32, seed=0)
    dm.setup()
    sizes = [len(dm.dataset(s)) for s in ("train", "val", "test")]
    assert sum(sizes) == 1797 and sizes[0] > sizes[2] > sizes[1]
    assert dm.dataset("train").images.shape[1:] == (1, 32, 32)
    labels = dm.dataset("test").labels
    assert torch.bincount(labels).min() >= 30  # every digit in the test split
    again = DigitsDataModule(32, seed=0)
    again.setup()
    assert torch.equal(again.dataset("val").labels, dm.dataset("val").labels)


def test_under_ddp_the_processes_share_the_training_batch_and_an_indivisible_one_is_refused(tmp_path):
    """batch_size is the batch of all DDP processes together (each takes its share a step), so the classifier and the
    GAN see the same batch and take the same steps on any number of processes; evaluation loaders keep theirs."""
    from types import SimpleNamespace

    import pytest

    from cgmagan.errors import ConfigError
    from tests.cache_helpers import make_datamodule

    data = ShapesDataModule(32, batch_size=64, split_sizes=(64, 16, 16), seed=0)
    for processes, share in ((1, 64), (2, 32), (4, 16)):
        data.trainer = SimpleNamespace(world_size=processes, global_rank=0)
        assert data.train_dataloader().batch_size == share
    assert data.loader("test").batch_size == 64
    data.trainer = SimpleNamespace(world_size=3, global_rank=0)
    with pytest.raises(ConfigError, match=r"dataset.batch_size=64 is the training batch of the 3 DDP processes together .* multiple of 3"):
        data.train_dataloader()

    cgmas = make_datamodule(str(tmp_path / "cache"))  # gan.batch_size 8 over 64 training maps
    cgmas.setup()
    assert [cgmas.train_batches(n) for n in (1, 2, 4)] == [8, 8, 8]  # each process: 64 / n maps in batches of 8 / n
    cgmas.trainer = SimpleNamespace(world_size=2, global_rank=0)
    assert cgmas.train_dataloader().batch_size == 4
    with pytest.raises(ConfigError, match="gan.batch_size=8 .* 3 DDP processes"):
        cgmas.train_batches(3)
