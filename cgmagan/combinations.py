"""A combination is a (dataset, backbone) pair; an experiment trains on some, tests on more."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from cgmagan.data.base import ClassificationDataModule
from cgmagan.errors import ConfigError


@dataclass
class Combination:
    dataset: str
    backbone: str
    kind: str  # seen | unseen_dataset | unseen_backbone | unseen_both | unseen_pair
    dataset_cfg: DictConfig
    backbone_cfg: DictConfig

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.backbone}"

    @property
    def seen(self) -> bool:
        return self.kind == "seen"

    @property
    def input_size(self) -> int:
        return self.backbone_cfg.get("input_size") or self.dataset_cfg.input_size

    def datamodule(self) -> ClassificationDataModule:
        kwargs = {k: v for k, v in self.dataset_cfg.items() if k != "name"}
        kwargs["input_size"] = self.input_size
        return instantiate(OmegaConf.create(kwargs))


def _option(cfg: DictConfig, group: str, name: str) -> DictConfig:
    """The ``group`` node for option ``name``: the composed one when it is selected (with the
    user's overrides), else the packaged option file, attached under ``cfg`` so that its
    interpolations (``${paths.data_dir}``, ``${seed}``) resolve against this run."""
    if cfg[group].name == name:
        return cfg[group]
    path = resources.files("cgmagan.conf") / group / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.name[:-5] for p in (resources.files("cgmagan.conf") / group).iterdir())
        raise ConfigError(f"unknown {group} {name!r} in combinations; choose one of: {', '.join(options)}")
    with open_dict(cfg):
        if "_options" not in cfg:
            cfg._options = {}
        if group not in cfg._options:
            cfg._options[group] = {}
        cfg._options[group][name] = OmegaConf.load(str(path))
    return cfg._options[group][name]


def _parse(entry: str) -> tuple[str, str]:
    parts = str(entry).split("/")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"a combination is written 'dataset/backbone', got {entry!r}")
    return parts[0], parts[1]


def resolve_combinations(cfg: DictConfig) -> tuple[list[Combination], list[Combination]]:
    """(training combinations, held-out combinations) from ``cfg.combinations``."""
    train = [_parse(e) for e in cfg.combinations.train]
    unseen = [_parse(e) for e in cfg.combinations.get("unseen") or []]
    if not train:
        raise ConfigError("combinations.train is empty: the GAN needs at least one combination to learn from")
    seen_data = {d for d, _ in train}
    seen_nets = {b for _, b in train}

    def kind(d: str, b: str) -> str:
        if (d, b) in train:
            return "seen"
        new_d, new_b = d not in seen_data, b not in seen_nets
        return {(True, True): "unseen_both", (True, False): "unseen_dataset", (False, True): "unseen_backbone"}.get(
            (new_d, new_b), "unseen_pair"
        )

    def build(pairs):
        return [Combination(d, b, kind(d, b), _option(cfg, "dataset", d), _option(cfg, "backbone", b)) for d, b in pairs]

    return build(train), build([p for p in unseen if p not in train])
