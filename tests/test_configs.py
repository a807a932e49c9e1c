from importlib import resources

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from cgmagan.backbones import build_backbone, build_net
from cgmagan.combinations import resolve_combinations
from cgmagan.config import apply_debug_preset
from cgmagan.errors import UserError
from cgmagan.utils import instantiate_list
from tests.conftest import compose_config

EXPERIMENTS = sorted(p.name[:-5] for p in (resources.files("cgmagan.conf") / "experiment").iterdir() if p.name.endswith(".yaml"))


def test_there_are_experiments():
    assert {"quickstart", "lsft_food_resnet", "gsft_food_resnet"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_resolves(tmp_path, name):
    cfg = compose_config(tmp_path, [f"+experiment={name}"])
    OmegaConf.resolve(cfg)  # every interpolation resolves
    train, unseen = resolve_combinations(cfg)
    assert train and all(c.seen for c in train) and not any(c.seen for c in unseen)
    gen = instantiate(cfg.conditioning.generator)
    assert gen.num_cgmas == cfg.cgma.k


DEBUG_PRESETS = sorted(p.name[:-5] for p in (resources.files("cgmagan.conf") / "debug").iterdir() if p.name.endswith(".yaml"))
LOGGERS = sorted(p.name[:-5] for p in (resources.files("cgmagan.conf") / "logger").iterdir() if p.name.endswith(".yaml"))


@pytest.mark.parametrize("name", DEBUG_PRESETS)
def test_every_debug_preset_builds_the_trainer_and_changes_what_it_says(tmp_path, name):
    cfg = compose_config(tmp_path, [f"debug={name}"])
    OmegaConf.resolve(cfg)
    trainer = instantiate(cfg.trainer)
    if name == "fast_dev_run":
        assert trainer.fast_dev_run and cfg.evaluate.max_images == 16
    elif name == "overfit":
        assert cfg.gan.trainer.overfit_batches == 1 and not trainer.overfit_batches  # the GAN's fit only
    else:
        assert type(trainer.profiler).__name__ == "SimpleProfiler" and trainer.profiler.dirpath.endswith("profiler")


@pytest.mark.parametrize("name", LOGGERS)
def test_every_logger_preset_builds(tmp_path, name):
    from cgmagan.loggers import build_loggers, finish

    cfg = compose_config(tmp_path, [f"logger={name}"] + (["logger.wandb.mode=disabled"] if name in ("wandb", "many") else []))
    loggers = build_loggers(cfg)
    finish(loggers)  # a W&B run left open is the one every later WandbLogger of this process would reuse
    kinds = sorted(type(lg).__name__ for lg in loggers)
    expected = {"csv": ["CSVLogger"], "none": [], "tensorboard": ["TensorBoardLogger"],
                "wandb": ["CSVLogger", "WandbLogger"], "many": ["CSVLogger", "TensorBoardLogger", "WandbLogger"]}  # fmt: skip
    assert kinds == expected[name]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_a_debug_preset_beats_any_experiment_and_the_command_line_beats_both(tmp_path, experiment):
    """``+experiment=quickstart debug=fast_dev_run`` (this very command line) runs the preset's
    sliver: Hydra merged the experiment after it, so the preset is applied again on top."""
    overrides = [f"+experiment={experiment}", "debug=fast_dev_run", "evaluate.auc_images=2"]
    cfg = compose_config(tmp_path, overrides)
    apply_debug_preset(cfg, overrides)
    assert cfg.trainer.fast_dev_run and cfg.evaluate.max_images == 16 and cfg.classifier.max_epochs == 1
    assert cfg.evaluate.auc_images == 2 and not cfg.evaluate.condition_importance  # the command line's, the preset's
    untouched = compose_config(tmp_path, [f"+experiment={experiment}"])
    assert cfg.gan == untouched.gan and cfg.combinations == untouched.combinations  # the rest stays the experiment's
    apply_debug_preset(untouched, [f"+experiment={experiment}"])
    assert untouched == compose_config(tmp_path, [f"+experiment={experiment}"]), "no preset: nothing changes"


def test_command_line_beats_the_experiment(tmp_path):
    cfg = compose_config(tmp_path, ["+experiment=lsft_food_resnet", "conditioning=gsft", "dataset=animals10", "backbone=vgg16"])
    assert cfg.conditioning.name == "gsft"
    (combo,) = resolve_combinations(cfg)[0]
    assert (combo.dataset, combo.backbone) == ("animals10", "vgg16")


def test_default_config_names_seen_and_unseen_kinds(tmp_path):
    cfg = compose_config(tmp_path)
    train, unseen = resolve_combinations(cfg)
    # issue 10: at least four training combinations over two datasets and two backbone families,
    # and every unseen kind held out
    assert len(train) >= 4
    assert {c.dataset for c in train} >= {"shapes", "textures"}
    assert {c.backbone for c in train} >= {"small_vgg", "small_resnet"}
    assert {c.kind for c in unseen} == {"unseen_backbone", "unseen_dataset", "unseen_both"}
    assert not {c.name for c in unseen} & {c.name for c in train}


def test_unknown_names_and_entries_without_target_are_errors(tmp_path):
    cfg = compose_config(tmp_path, ["combinations.train=[digits/no_such_net]"])
    with pytest.raises(UserError, match="unknown backbone 'no_such_net'"):
        resolve_combinations(cfg)
    with pytest.raises(ValueError, match="has no _target_"):
        instantiate_list(OmegaConf.create({"mine": {"save_dir": "x"}}), "logger")


def tiny_net(in_channels: int, num_classes: int, width: int) -> nn.Module:
    """A user's own backbone factory, named by ``_target_`` in a backbone config."""
    return nn.Sequential(nn.Conv2d(in_channels, width, 3), nn.ReLU(), nn.Conv2d(width, width, 3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))  # fmt: skip


def test_backbone_target_builds_the_classifier_and_bad_names_are_user_errors(tmp_path):
    own = {"_target_": "tests.test_configs.tiny_net", "width": 5, "input_size": None}
    cfg = compose_config(tmp_path)
    module = instantiate(cfg.classifier.module, net=build_net(own, 1, 3), num_classes=3, mean=[0.5], std=[0.5])
    convs = [m for m in module.net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 5), (5, 5)]
    assert module.net(torch.rand(2, 1, 12, 12)).shape == (2, 3)

    packaged = {"_target_": "cgmagan.backbones.build_backbone", "name": "no_such_net", "pretrained": False}
    with pytest.raises(UserError, match="unknown backbone 'no_such_net'; choose one of"):
        build_net(packaged, 3, 3)


def test_pretrained_weights_missing_from_the_local_cache_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match=r"resnet18 ImageNet weights at .*checkpoints.*nothing is downloaded"):
        build_backbone("resnet18", 3, 10, pretrained=True)
    with pytest.raises(UserError, match="small_vgg has no pretrained weights"):
        build_backbone("small_vgg", 3, 10, pretrained=True)


@pytest.mark.parametrize("trainer,tasks,gpus", [(["trainer=ddp", "trainer.devices=4"], 4, 4), (["trainer=gpu"], 1, 1),
                                                (["trainer=cpu"], 1, 0)])  # fmt: skip
def test_the_slurm_preset_gives_each_device_a_task_and_requeues_on_timeout(tmp_path, monkeypatch, trainer, tasks, gpus):
    """Lightning's DDP under SLURM takes its ranks from SLURM's tasks and refuses a job whose
    tasks per node differ from its devices (the preset's fixed tasks_per_node: 1 did)."""
    from hydra import compose, initialize_config_module
    from lightning_fabric.plugins.environments import SLURMEnvironment

    with initialize_config_module("cgmagan.conf", version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", *trainer], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert (launcher.tasks_per_node, launcher.gpus_per_node) == (tasks, gpus) and launcher.max_num_timeout >= 1
    assert launcher.signal_delay_s >= 120  # time to stop cleanly before the wall time
    monkeypatch.setenv("SLURM_JOB_NAME", "cgmagan")
    monkeypatch.setenv("SLURM_NNODES", "1")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", str(launcher.tasks_per_node))
    SLURMEnvironment().validate_settings(num_devices=cfg.trainer.devices, num_nodes=1)
    if tasks > 1:
        monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "1")
        with pytest.raises(ValueError, match="tasks per node"):
            SLURMEnvironment().validate_settings(num_devices=cfg.trainer.devices, num_nodes=1)


@pytest.mark.parametrize("launcher,n_jobs", [([], None), (["hydra/launcher=parallel"], 2),
                                             (["hydra/launcher=parallel", "hydra.launcher.n_jobs=-1"], -1)])  # fmt: skip
def test_threads_auto_shares_the_cores_among_the_parallel_launchers_jobs(launcher, n_jobs):
    """threads=auto: torch's default under the basic launcher, cores // n_jobs under joblib's (one each for
    n_jobs -1); a number is taken as it is, and anything but a positive one is a user error."""
    import os

    from hydra import compose, initialize_config_module

    from cgmagan.cli import job_threads

    with initialize_config_module("cgmagan.conf", version_base="1.3"):
        cfg = compose("config", overrides=launcher, return_hydra_config=True)
    cores = len(os.sched_getaffinity(0))
    expected = None if n_jobs is None else 1 if n_jobs == -1 else max(1, cores // n_jobs)
    assert cfg.threads == "auto" and job_threads(cfg.threads, cfg.hydra.launcher) == expected
    assert job_threads(3, cfg.hydra.launcher) == 3
    with pytest.raises(UserError, match="positive number of threads"):
        job_threads(0, cfg.hydra.launcher)


VARIANTS = [[]] + [[f"+experiment={name}"] for name in EXPERIMENTS] + [
    [f"{group}={p.name[:-5]}"] for group in ("dataset", "backbone", "gan", "trainer", "logger", "callbacks", "conditioning", "debug")
    for p in (resources.files("cgmagan.conf") / group).iterdir() if p.name.endswith(".yaml")]  # fmt: skip


def test_every_setting_of_every_experiment_and_option_has_a_description(tmp_path):
    """--help describes every setting from the config files' own comments (one source)."""
    from cgmagan.settings_help import all_descriptions, describe, leaves

    descriptions = all_descriptions()
    missing = {}
    for overrides in VARIANTS:
        for path, _ in leaves(compose_config(tmp_path, overrides)):
            if not describe(path, descriptions):
                missing.setdefault(path, overrides)
    assert missing == {}, f"settings without a description (a comment in their config file): {missing}"


def test_help_lists_the_groups_and_each_setting_with_its_value_and_description(monkeypatch, capsys):
    import cgmagan.cli
    import cgmagan.explain_images

    monkeypatch.setattr("sys.argv", ["run.py", "--help", "+experiment=quickstart", "cgma.k=4"])
    assert cgmagan.cli.main() is None  # printed, nothing run
    text = capsys.readouterr().out
    assert "cgma.k = 4    # CGMAs kept (paper: 8)" in text and "classifier.max_epochs = 3    # training epochs" in text
    assert "  dataset: animals10, chinese_mnist, cifar10, digits" in text and "Hydra's own options" in text
    monkeypatch.setattr("sys.argv", ["cgmagan-explain", "--help"])
    cgmagan.explain_images.main()
    text = capsys.readouterr().out
    assert "warn_below = 0.5    # predicted-class probability" in text and "input_dir = '???'" in text
    assert "cgma." not in text and "Config groups" not in text, "explain shows its own settings only"


@pytest.mark.parametrize(("overrides", "score"), [
    ([], "val/l1"),  # imitating Grad-CAM: agreement with it
    (["gan.faithfulness.weight=10", "gan.module.lambda_l1=0", "gan.lambda_adv=0"], "val/faithfulness"),  # faithful only
    (["gan.faithfulness.weight=10"], "val/objective"),  # both: the weighted sum
])  # fmt: skip
def test_the_gan_stops_and_keeps_its_best_checkpoint_on_the_score_of_its_objective(tmp_path, overrides, score):
    from pytorch_lightning.callbacks import EarlyStopping

    from cgmagan.callbacks import LearningCurve
    from cgmagan.stages.gan import gan_callbacks, monitored

    cfg = compose_config(tmp_path, overrides)
    assert monitored(cfg) == (score, "min")
    callbacks = gan_callbacks(cfg)
    (best,) = [c for c in callbacks if type(c).__name__ == "ModelCheckpoint" and c.monitor]
    (stop,) = [c for c in callbacks if isinstance(c, EarlyStopping)]
    (curve,) = [c for c in callbacks if isinstance(c, LearningCurve)]
    assert best.monitor == stop.monitor == curve.scores[-1] == score  # the curve draws what the stop watches


def test_negative_faithfulness_weights_are_refused(tmp_path):
    from cgmagan.config import validate
    from cgmagan.errors import ConfigError

    with pytest.raises(ConfigError, match="gan.faithfulness holds loss weights"):
        validate(compose_config(tmp_path, ["gan.faithfulness.area=-1"]))
