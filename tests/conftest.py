import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)


@contextmanager
def one_thread_per_process():
    """Runs compared across process layouts, each process on one thread: a DDP rank on 2 cores gets
    one from Lightning, and a convolution's float sums depend on the thread count (and the CPU's
    kernels), so a single process on two threads differs from the ranks by ~1e-7, enough to move a
    float16 rounding or a rank statistic. Subprocesses inherit it through OMP_NUM_THREADS."""
    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env


def compose_config(tmp_path, overrides=()) -> DictConfig:
    """The packaged config composed with Hydra's compose API, all paths inside ``tmp_path``."""
    with initialize_config_module("cgmagan.conf", version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "out")
        cfg.paths.cache_dir = str(tmp_path / "cache")
        cfg.paths.data_dir = str(tmp_path / "data")
    return cfg


TINY = [
    "combinations.train=[digits/small_vgg,shapes/small_resnet]",
    "combinations.unseen=[shapes/small_mobilenet]",
    "+dataset.fractions=[0.5,0.2,0.3]",
    "classifier.max_epochs=1",
    "classifier.bn_recalibration_batches=2",
    "gan.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "evaluate.max_images=24",
    "evaluate.auc_images=4",
    "evaluate.deletion_steps=4",
    "evaluate.methods=null",  # every registered method, Score-CAM included
    "cgma.max_per_split=48",
    "cgma.shard_size=16",
    "logger=csv",
]


# for tests of something other than the evaluation: three methods, no sanity check (Score-CAM and
# the model randomisation cascade over every method are most of a TINY run's time)
FEW_METHODS = ["evaluate.methods=[gradcam,gan,last_cgma]", "evaluate.sanity_images=0"]
# for tests that read a finished run: Grad-CAM, the GAN and every baseline it is compared with (the
# grad-cam package's CAMs and the sanity check left out)
MAP_METHODS = ["evaluate.methods=[gradcam,gan,last_cgma,penultimate_gradcam,linear_cgma,mean_train_target,centred_gaussian]",
               "evaluate.sanity_images=0"]  # fmt: skip


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """One tiny run of the whole pipeline, W&B logging offline beside the CSV log, shared by the
    tests that read a finished run (W&B files, the notebook, explaining new images)."""
    from cgmagan.pipeline import run_experiment

    tmp = tmp_path_factory.mktemp("finished_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("WANDB_API_KEY", raising=False)
        mp.setenv("HOME", str(tmp / "home"))  # no ~/.netrc: W&B offline, as on CI
        mp.setenv("WANDB_DATA_DIR", str(tmp / "wandb-data"))
        cfg = compose_config(tmp, [*TINY, *MAP_METHODS, "logger=wandb", "trainer.log_every_n_steps=1"])  # training losses logged too
        results = run_experiment(cfg)
    return Path(cfg.paths.output_dir), results
