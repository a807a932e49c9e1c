"""Promise: a damaged classifier checkpoint is found by its checksum, set aside (never loaded)
and the classifier retrained; a truncated GAN checkpoint is a clear error."""

from pathlib import Path

import pytest

from cgmagan.config import resolve_paths
from cgmagan.errors import UserError
from cgmagan.runtime import Runtime
from cgmagan.stages.classifier import train_classifiers
from cgmagan.stages.gan import load_gan
from tests.conftest import TINY, compose_config


def test_a_damaged_classifier_checkpoint_is_set_aside_and_retrained(tmp_path, caplog):
    cfg = compose_config(tmp_path, [*TINY, "combinations.train=[digits/small_vgg]", "combinations.unseen=[]",
                                    "trainer.fast_dev_run=true"])  # fmt: skip
    resolve_paths(cfg)
    (first,) = train_classifiers(cfg, Runtime.from_config(cfg)).all
    data = bytearray(first.checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.checkpoint.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        (again,) = train_classifiers(cfg, Runtime.from_config(cfg)).all
    assert "fails its checksum; moved to" in caplog.text and not again.reused
    assert again.checkpoint == first.checkpoint and again.checkpoint.read_bytes() != bytes(data)
    assert len(list(first.checkpoint.parent.parent.glob("*.damaged-*"))) == 1, "the damaged copy is kept aside"


def test_a_truncated_gan_checkpoint_is_a_clear_error(tmp_path, finished_run):
    _, results = finished_run
    truncated = tmp_path / "gan.ckpt"
    truncated.write_bytes(Path(results["gan_checkpoint"]).read_bytes()[:5000])
    with pytest.raises(UserError, match="cannot be read .* is it a .ckpt written by this package, and complete"):
        load_gan(truncated)
