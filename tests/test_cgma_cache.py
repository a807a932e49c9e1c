import json
import logging
import math
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from cgmagan.archs import LSFTGenerator, PatchDiscriminator
from cgmagan.cam import is_zero_map, select_layers
from cgmagan.data import cgma_store
from cgmagan.models.gan_module import CGMAGAN
from tests.cache_helpers import NAME, OneStep, make_datamodule, tree_bytes
from tests.conftest import one_thread_per_process

SLOW_PRECOMPUTE = """
import sys, time
from cgmagan.data import cgma_datamodule as cd
from tests.cache_helpers import make_datamodule
compute = cd.ShardComputer.__call__
def slow(self, rows):
    out = compute(self, rows)
    time.sleep(0.4)
    return out
cd.ShardComputer.__call__ = slow
make_datamodule(sys.argv[1]).prepare_data()
"""


COUNTED_PRECOMPUTE = """
import sys, time
from cgmagan.data import cgma_datamodule as cd
from tests.cache_helpers import make_datamodule
compute, calls = cd.ShardComputer.__call__, []
def counted(self, rows):
    calls.append(rows)
    time.sleep(0.1)
    return compute(self, rows)
cd.ShardComputer.__call__ = counted
make_datamodule(sys.argv[1]).prepare_data()
print("computed", len(calls))
"""


def split_dir(cache: Path, split: str) -> Path:
    return next(p for p in cache.glob(f"cgma/*-{split}-*") if p.is_dir())


def complete(cache: Path, verify: str = "stat") -> dict[str, bytes]:
    dm = make_datamodule(str(cache), verify)
    dm.prepare_data()
    assert len(dm.manifests) == 3
    return tree_bytes(cache)


def test_same_inputs_give_identical_bytes(tmp_path):
    first, second = complete(tmp_path / "a"), complete(tmp_path / "b")
    assert first == second
    assert sum(name.endswith("cgma.npy") for name in first) == 8 + 2 + 2  # 64/8 + 16/8 + 16/8 shards
    cgmas = np.load(tmp_path / "a" / next(n for n in first if n.endswith("cgma.npy")), mmap_mode="r")
    assert cgmas.dtype == np.float16 and cgmas.shape == (8, 4, 16, 16)


def test_killed_precompute_resumes_to_identical_bytes(tmp_path):
    reference = complete(tmp_path / "reference")
    cache = tmp_path / "killed"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PRECOMPUTE, str(cache)], cwd=root)
    deadline = time.time() + 120
    while not list(cache.glob("cgma/*-train-*/shard-00002/meta.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    train = split_dir(cache, "train")
    assert not (train / "manifest.json").exists(), "the kill must land mid-way"
    kept = sorted(p.name for p in train.glob("shard-*"))
    assert 3 <= len(kept) < 8
    assert complete(cache) == reference
    assert not list(cache.rglob(".shard-*.tmp")), "the killed writer's partial shard is cleaned up"


@pytest.mark.parametrize("verify", ["stat", "full"])
def test_flipped_byte_is_detected_and_recomputed(tmp_path, caplog, verify):
    cache = tmp_path / "cache"
    reference = complete(cache, verify)
    victim = split_dir(cache, "train") / "shard-00001" / "cgma.npy"
    data = bytearray(victim.read_bytes())
    data[-7] ^= 0xFF
    victim.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert complete(cache, verify) == reference
    assert any("shard-00001" in r.message and "damaged" in r.message for r in caplog.records)


def test_truncated_shard_is_detected_and_recomputed(tmp_path):
    cache = tmp_path / "cache"
    reference = complete(cache)
    victim = split_dir(cache, "val") / "shard-00000" / "target.npy"
    victim.write_bytes(victim.read_bytes()[:100])
    assert complete(cache) == reference


def test_two_process_ddp_precompute_equals_single_process(tmp_path):
    with one_thread_per_process():
        reference = complete(tmp_path / "single")
        dm = make_datamodule(str(tmp_path / "ddp"))
        trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=1, limit_val_batches=0,
                             logger=False, enable_checkpointing=False, enable_progress_bar=False)  # fmt: skip
        trainer.fit(OneStep(), datamodule=dm)
    assert tree_bytes(tmp_path / "ddp") == reference


def test_the_precompute_writes_float32_maps_whatever_the_training_precision(tmp_path):
    """A bf16-mixed run (its trainer attached, and inside an autocast region as Lightning's steps
    are) writes the same cache bytes as a float32 run from the same classifier."""
    reference = complete(tmp_path / "float32")
    dm = make_datamodule(str(tmp_path / "bf16"))
    dm.trainer = pl.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False, enable_checkpointing=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.nn.functional.conv2d(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 3, 3)).dtype == torch.bfloat16
        dm.prepare_data()
    assert tree_bytes(tmp_path / "bf16") == reference


def test_manifest_records_layers_and_zero_targets_of_its_shards(tmp_path):
    dm = make_datamodule(str(tmp_path))
    dm.prepare_data()
    source = dm.sources[NAME]
    probe = source.data.dataset("train")[0][0][None]
    for split in ("train", "val", "test"):
        manifest = dm.manifests[(NAME, split)]
        targets = torch.from_numpy(dm.arrays(NAME, split)["target"].rows(0, manifest["count"]).astype(np.float32))
        assert manifest["zero_targets"] == int(is_zero_map(targets).sum())
        assert manifest["layers"] == [n for n, _ in select_layers(source.classifier, probe)]
        assert manifest["num_layers"] == len(manifest["layers"]) >= 2


def test_shards_of_an_older_format_are_recomputed(tmp_path, caplog):
    cache = tmp_path / "cache"
    reference = complete(cache)
    meta_path = split_dir(cache, "test") / "shard-00000" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["format"] = 1
    meta_path.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        assert complete(cache) == reference
    assert any("stale" in r.message for r in caplog.records)


def test_train_loader_serves_every_cached_sample_once_as_stored_and_the_gan_trains_on_it(tmp_path):
    dm = make_datamodule(str(tmp_path))
    dm.prepare_data()
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert dm.train_batches() == len(batches)  # counted from the manifests, no shard opened
    rows = dm.manifests[(NAME, "train")]["count"]
    sampler = torch.utils.data.DistributedSampler(range(rows), num_replicas=4, rank=0, shuffle=False)
    # each rank's share of the rows, in its share of the batch (gan.batch_size is all the ranks' batch together)
    assert dm.train_batches(world_size=4) == math.ceil(len(sampler) / (dm.batch_size // 4))
    cgmas = torch.cat([b["cgma"] for b in batches])
    assert cgmas.dtype == torch.float16 and len(cgmas) == dm.manifests[(NAME, "train")]["count"]
    stored = torch.from_numpy(dm.arrays(NAME, "train")["cgma"].rows(0, len(cgmas)))
    # shuffled, so compare each sample's checksum as a multiset
    assert sorted(cgmas.double().sum((1, 2, 3)).tolist()) == sorted(stored.double().sum((1, 2, 3)).tolist())
    # the loaders alone, without the datamodule's hooks: the GAN takes float16 batches as they come
    gan = CGMAGAN(LSFTGenerator(num_cgmas=4, nf=8, cond_nf=4, cond_hidden=8), PatchDiscriminator(3, ndf=8, n_layers=1),
                  optimizer_g=partial(torch.optim.Adam, lr=2e-4), optimizer_d=partial(torch.optim.Adam, lr=2e-4))  # 16x16
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit(gan, train_dataloaders=dm.train_dataloader(), val_dataloaders=dm.val_dataloader())
    assert trainer.global_step == 4 and math.isfinite(trainer.callback_metrics["val/l1"])  # 2 steps x 2 optimisers


def count_hashed_files(monkeypatch) -> list[Path]:
    hashed = []
    real = cgma_store.file_sha256

    def spy(path):
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(cgma_store, "file_sha256", spy)
    return hashed


def test_stat_verification_rehashes_only_shards_whose_files_changed(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    reference = complete(cache, "stat")
    hashed = count_hashed_files(monkeypatch)
    assert complete(cache, "stat") == reference
    assert hashed == [], "unchanged shards are trusted without reading them"

    copy = tmp_path / "copy"  # new inodes and times: hashed once, then trusted again
    shutil.copytree(cache, copy)
    assert complete(copy, "stat") == reference
    assert len(hashed) == sum(name.endswith(".npy") for name in reference)
    hashed.clear()
    assert complete(copy, "stat") == reference and hashed == []

    assert complete(copy, "full") == reference
    assert len(hashed) == sum(name.endswith(".npy") for name in reference)


def test_two_jobs_sharing_a_cache_compute_each_shard_once(tmp_path):
    reference = complete(tmp_path / "reference")
    cache = tmp_path / "shared"
    root = Path(__file__).resolve().parents[1]
    jobs = [subprocess.Popen([sys.executable, "-c", COUNTED_PRECOMPUTE, str(cache)], cwd=root, stdout=subprocess.PIPE,
                             text=True) for _ in range(2)]  # fmt: skip
    outputs = [job.communicate(timeout=300)[0] for job in jobs]
    assert all(job.returncode == 0 for job in jobs)
    computed = [int(out.split("computed")[-1]) for out in outputs]
    assert sum(computed) == 8 + 2 + 2, f"shards computed per job: {computed}"  # every shard once, by one job
    assert tree_bytes(cache) == reference


def test_the_gan_shuffle_follows_the_run_seed(tmp_path):
    dm = make_datamodule(str(tmp_path))
    dm.prepare_data()
    first, again = (next(iter(dm.train_dataloader()))["target"] for _ in range(2))
    dm.seed = 1
    other = next(iter(dm.train_dataloader()))["target"]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_a_nan_in_the_classifier_stops_the_precompute_naming_where_and_writes_no_shard(tmp_path):
    from cgmagan.errors import NumericalError

    dm = make_datamodule(str(tmp_path / "cache"))
    source = dm.sources[NAME]
    conv = [m for m in source.classifier.modules() if isinstance(m, torch.nn.Conv2d)][2]
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(NumericalError, match=r"shapes/small_resnet train: Grad-CAM is not finite for 8 image\(s\) of this "
                                             r"batch, first cache row 0 \(dataset item \d+\), at layers \['"):
        dm.prepare_data()
    assert not list((tmp_path / "cache").rglob("*.npy")), "no shard holds NaN maps"


@pytest.mark.parametrize("edit", ["checksum", "count"])
def test_a_manifest_that_disagrees_with_its_shards_is_written_again_from_them(tmp_path, caplog, edit):
    cache = tmp_path / "cache"
    reference = complete(cache)
    path = split_dir(cache, "train") / "manifest.json"
    manifest = json.loads(path.read_text())
    if edit == "checksum":  # e.g. another run's manifest beside these shards
        manifest["shards"][1] = {name: "0" * 64 for name in manifest["shards"][1]}
    else:
        manifest["count"] += 8
    path.write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING):
        assert complete(cache) == reference  # the shards kept, the manifest rewritten as it was
    assert any("manifest disagrees with its shards" in r.message for r in caplog.records)
