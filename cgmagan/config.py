"""The run's config checked once, before any work starts: later code trusts it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from cgmagan.combinations import resolve_combinations
from cgmagan.data.cgma_store import VERIFY_MODES
from cgmagan.errors import ConfigError
from cgmagan.methods import METHODS, REFERENCE_METHOD
from cgmagan.utils import digest


def _positive(node: DictConfig, prefix: str, keys: tuple[str, ...], allow_zero: bool = False) -> None:
    for key in keys:
        value = node[key]
        if value is None and key == "max_per_split":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if allow_zero else 1):
            need = "a non-negative" if allow_zero else "a positive"
            raise ConfigError(f"{prefix}.{key} must be {need} integer, got {value!r}")


def _one_of(value, choices, name: str) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def apply_debug_preset(cfg: DictConfig, overrides: list[str] = ()) -> None:
    """Make ``debug=NAME`` win over ``+experiment=...``: Hydra appends a command-line experiment
    after the defaults list, so its values replace the preset's (``+experiment=quickstart
    debug=fast_dev_run`` evaluated 448 images). The preset is merged again on top, then the
    command-line ``overrides`` of its keys again over it: command line > debug preset > experiment."""
    name = cfg.get("debug_preset")
    if not name:
        return
    preset = OmegaConf.load(str(resources.files("cgmagan.conf") / "debug" / f"{name}.yaml"))
    with open_dict(cfg):
        cfg.merge_with(preset)
        for override in OverridesParser.create().parse_overrides(list(overrides)):
            key = override.key_or_group
            if not override.is_delete() and OmegaConf.select(preset, key, default=None) is not None:
                OmegaConf.update(cfg, key, override.value(), merge=False)


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the first value that cannot work, with what is accepted."""
    cgma = cfg.cgma
    _one_of(cgma.order, ("forward", "backward"), "cgma.order")
    for switch in ("exclude_target_layer", "cumulative"):
        _one_of(cgma[switch], (True, False), f"cgma.{switch}")
    _one_of(cgma.verify, VERIFY_MODES, "cgma.verify")
    _positive(cgma, "cgma", ("k", "map_size", "batch_size", "shard_size", "max_per_split"))
    _positive(cfg.gan, "gan", ("map_size", "batch_size", "max_epochs"))
    faith = cfg.gan.get("faithfulness") or {}
    bad = {k: v for k, v in faith.items() if float(v) < 0}
    if bad:
        raise ConfigError(f"gan.faithfulness holds loss weights, 0 or more, got {bad}")
    if float(cfg.gan.get("lambda_adv", 1.0)) < 0:
        raise ConfigError(f"gan.lambda_adv is a loss weight, 0 or more (0 trains on L1 alone), got {cfg.gan.lambda_adv!r}")
    if cfg.gan.get("lr_cut_factor") is not None and not 0 < float(cfg.gan.lr_cut_factor) < 1:
        raise ConfigError(f"gan.lr_cut_factor multiplies the learning rates at each cut: it must lie in (0, 1), "
                          f"got {cfg.gan.lr_cut_factor!r}")  # fmt: skip
    if cfg.gan.get("ema_decay") is not None and not 0 < float(cfg.gan.ema_decay) < 1:
        raise ConfigError(f"gan.ema_decay must be in (0, 1) (e.g. 0.999), or null for no averaging, got {cfg.gan.ema_decay!r}")

    ev = cfg.evaluate
    _positive(ev, "evaluate", ("max_images", "deletion_steps", "batch_size"))
    _positive(ev, "evaluate", ("auc_images", "road_images", "overlay_rows"), allow_zero=True)
    if not all(isinstance(p, int) and 0 < p < 100 for p in ev.road_percentiles):
        raise ConfigError(f"evaluate.road_percentiles must be integers between 0 and 100, got {list(ev.road_percentiles)}")
    if not 0 < float(ev.area) <= 1:
        raise ConfigError(f"evaluate.area is a share of pixels in (0, 1], got {ev.area!r}")
    if float(ev.gaussian_sigma) <= 0:
        raise ConfigError(f"evaluate.gaussian_sigma must be positive, got {ev.gaussian_sigma!r}")
    for key in ("methods", "methods_other_seeds"):
        names = ev.get(key)
        for name in names or []:
            _one_of(name, METHODS, f"each of evaluate.{key}")
        if names and REFERENCE_METHOD not in names:
            raise ConfigError(f"evaluate.{key} must include {REFERENCE_METHOD!r}: every method is scored against it")

    _check_gan_fits(cfg)
    resolve_combinations(cfg)  # unknown dataset or backbone names


def _check_gan_fits(cfg: DictConfig) -> None:
    """One forward of the generator and the discriminator at gan.map_size, with cgma.k maps: a size
    the networks cannot take fails here, not after the whole CGMA cache is built."""
    size, k = int(cfg.gan.map_size), int(cfg.cgma.k)
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # building the nets draws weights
        generator = instantiate(cfg.gan.module.generator).eval()
        discriminator = instantiate(cfg.gan.module.discriminator).eval()
        try:
            discriminator(torch.zeros(1, 3, size, size), generator(torch.zeros(1, 3, size, size), torch.zeros(1, k, size, size)))
        except (RuntimeError, ValueError) as err:  # a conv's kernel larger than its input, say
            raise ConfigError(f"gan.map_size={size} is too small for this generator and discriminator "
                              f"({str(err).splitlines()[0]}); raise gan.map_size") from None  # fmt: skip


def resolve_paths(cfg: DictConfig) -> None:
    """Absolute paths, so that nothing depends on where a launcher runs a job."""
    with open_dict(cfg):
        for key in ("data_dir", "cache_dir", "output_dir"):
            cfg.paths[key] = str(Path(cfg.paths[key]).expanduser().resolve())
    Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)


# settings that do not change a job's results: where it logs, whether finished jobs are skipped
_NOT_RESULTS = ("logger", "skip_finished", "print_config")


def job_fingerprint(cfg: DictConfig) -> str:
    """What makes two jobs the same: the resolved config, less what does not change results."""
    config = OmegaConf.to_container(cfg, resolve=True)
    return digest({k: v for k, v in config.items() if k not in _NOT_RESULTS})
