from importlib import resources

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cgmagan.combinations import resolve_combinations
from cgmagan.pipeline import instantiate_list
from tests.conftest import compose_config

EXPERIMENTS = sorted(p.name[:-5] for p in (resources.files("cgmagan") / "conf" / "experiment").iterdir() if p.name.endswith(".yaml"))


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


def test_command_line_beats_the_experiment(tmp_path):
    cfg = compose_config(tmp_path, ["+experiment=lsft_food_resnet", "conditioning=gsft", "dataset=animals10", "backbone=vgg16"])
    assert cfg.conditioning.name == "gsft"
    (combo,) = resolve_combinations(cfg)[0]
    assert (combo.dataset, combo.backbone) == ("animals10", "vgg16")


def test_default_config_names_seen_and_unseen_kinds(tmp_path):
    cfg = compose_config(tmp_path)
    train, unseen = resolve_combinations(cfg)
    assert [c.name for c in train] == ["digits/small_vgg", "shapes/small_resnet"]
    assert [c.kind for c in unseen] == ["unseen_backbone"]


def test_unknown_names_and_entries_without_target_are_errors(tmp_path):
    cfg = compose_config(tmp_path, ["combinations.train=[digits/no_such_net]"])
    with pytest.raises(ValueError, match="unknown backbone 'no_such_net'"):
        resolve_combinations(cfg)
    with pytest.raises(ValueError, match="has no _target_"):
        instantiate_list(OmegaConf.create({"mine": {"save_dir": "x"}}), "logger")
