"""What a reproduction costs before it is sent: every job of its sweeps with an estimate per stage.

The estimate multiplies each job's counts (images per split at the datasets' published sizes,
epochs, the evaluation's subsets, methods, the sanity check's cascade) by the per-image costs that
``benchmarks/paper_scale.py`` measured (``benchmarks/paper_scale.json``): on the machine it ran on,
a CPU or a GPU, which the estimate names. A classifier or CGMA cache that several jobs share (the
same settings and ``classifier.seed``) is paid by the first job that needs it.

Approximations, stated where they are printed: explanation, scoring and AUC costs of backbones
other than ResNet50 are ResNet50's scaled by their forward (or CGMA precompute) cost; images at an
input size other than the measured one scale with their pixel count; decoding overlaps compute
when loader workers run (it is left out).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from cgmagan.cam.cgma import cgma_settings
from cgmagan.combinations import Combination, resolve_combinations
from cgmagan.data.published import split_counts
from cgmagan.methods import scored_method_names
from cgmagan.stages.classifier import classifier_settings
from cgmagan.utils import digest

STAGES = ("classifiers", "cgma", "gan", "evaluation")
# methods that read the CGMA cache or a fixed map: their cost does not depend on the classifier
CACHE_METHODS = {"gan", "last_cgma", "linear_cgma", "mean_train_target", "centred_gaussian"}


def expand(overrides: list[str]) -> list[tuple[list[str], list[str]]]:
    """Hydra's sweep syntax (``seed=0,1,2 cgma.k=1,2,4``) into one job per combination of the swept
    values, as its basic sweeper orders them: (the job's swept values, all its overrides)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
               else [o.input_line] for o in parsed]  # fmt: skip
    swept = [o.is_sweep_override() for o in parsed]
    return [([v for v, s in zip(job, swept) if s], list(job)) for job in itertools.product(*choices)]


def job_config(overrides: list[str]) -> DictConfig:
    """The job's composed config (launcher and other ``hydra`` settings do not change its cost)."""
    with initialize_config_module("cgmagan.conf", version_base="1.3"):
        return compose("config", overrides=[o for o in overrides if not o.lstrip("+~").startswith("hydra")])


class NotEstimated(Exception):
    """A job whose cost cannot be estimated (a dataset other than the paper's)."""


@dataclass
class Rates:
    """Seconds per image, from benchmarks/paper_scale.json."""

    measured: dict

    @classmethod
    def load(cls, path: Path) -> Rates:
        if not path.is_file():
            raise SystemExit(f"no measurements at {path}: run `python benchmarks/paper_scale.py` (make bench) first, "
                             "on the kind of machine the jobs will run on")  # fmt: skip
        return cls(json.loads(path.read_text()))

    @property
    def source(self) -> str:
        m = self.measured
        kind = "GPU" if m["device_type"] == "cuda" else "CPU"
        return f"{kind} measurements ({m['device']}, torch {m['torch']}, {m['date']}, benchmarks/paper_scale.py)"

    def backbone(self, name: str) -> dict:
        return self.measured["backbones"].get(name, self.measured["backbones"]["resnet50"])

    def scale(self, combo: Combination) -> float:
        return (combo.input_size / self.measured["size"]) ** 2

    def per_image(self, combo: Combination, stage: str) -> float:
        return self.backbone(combo.backbone)[stage]["s_per_image"] * self.scale(combo)

    def explain(self, combo: Combination, method: str) -> float:
        """One map of ``method`` for ``combo``'s classifier."""
        ev, net = self.measured["evaluation"], self.backbone(combo.backbone)
        if method == "scorecam":  # one forward per channel of the target layer, and one plain
            return (net["target_channels"] + 1) * self.per_image(combo, "forward")
        cost = ev["explain"].get(method, ev["explain"]["gradcam"])["s_per_image"]
        if method in CACHE_METHODS:
            return cost
        return cost * self.per_image(combo, "cgma_precompute") / self.measured["backbones"]["resnet50"]["cgma_precompute"]["s_per_image"]

    def forward_scaled(self, combo: Combination, key: str) -> float:
        """A per-map evaluation cost measured on ResNet50, scaled by ``combo``'s forward cost."""
        resnet = self.measured["backbones"]["resnet50"]["forward"]["s_per_image"]
        return self.measured["evaluation"][key]["s_per_image"] * self.per_image(combo, "forward") / resnet


@dataclass
class Job:
    sweep: str
    overrides: list[str]  # the job's own (seed, swept values)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    classifiers_trained: int = 0
    classifiers_shared: int = 0

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def _counts(combo: Combination) -> dict[str, int]:
    counts = split_counts(combo.dataset, combo.dataset_cfg)
    if counts is None:
        raise NotEstimated(f"{combo.dataset} has no published image counts to estimate from (the paper's datasets only)")
    return counts


def estimate(jobs: list[tuple[str, list[str], list[str]]], rates: Rates) -> list[Job]:
    """``jobs``: (sweep, the job's own overrides, all its overrides) in launch order."""
    trained: set[str] = set()
    cached: set[str] = set()
    out = []
    for sweep, own, overrides in jobs:
        cfg = job_config(overrides)
        job = Job(sweep, own)
        train, unseen = resolve_combinations(cfg)
        per_split = int(cfg.cgma.max_per_split or 0)
        for combo in train + unseen:
            counts = _counts(combo)
            classifier = digest(classifier_settings(combo, cfg))
            if classifier in trained:
                job.classifiers_shared += 1
            else:
                trained.add(classifier)
                job.classifiers_trained += 1
                epochs = int(cfg.classifier.max_epochs)
                job.seconds["classifiers"] += (epochs * counts["train"] * rates.per_image(combo, "train_step")
                                               + (epochs * counts["val"] + counts["test"]) * rates.per_image(combo, "forward"))  # fmt: skip
            cached_rows = {split: min(per_split or n, n) for split, n in counts.items()}
            cache = digest({"classifier": classifier, "cgma": cgma_settings(cfg.cgma), "map": int(cfg.cgma.map_size), "rows": per_split})
            if cache not in cached:
                cached.add(cache)
                job.seconds["cgma"] += sum(cached_rows.values()) * rates.per_image(combo, "cgma_precompute")
            job.seconds["evaluation"] += _evaluation_seconds(combo, cfg, cached_rows["test"], rates)
        gan = rates.measured["gan"][str(cfg.conditioning.name)]["s_per_image"]  # a training step: D and G
        rows = {split: sum(min(per_split or n, n) for n in (_counts(c)[split] for c in train)) for split in ("train", "val")}
        job.seconds["gan"] = int(cfg.gan.max_epochs) * (rows["train"] + rows["val"] / 3) * gan  # validation: G's forward
        if float((cfg.gan.get("faithfulness") or {}).get("weight") or 0) > 0:
            # each row's classifier judges its masked input: forward and backward in training, forward in validation
            for combo in train:
                n = {split: min(per_split or m, m) for split, m in _counts(combo).items()}
                job.seconds["gan"] += int(cfg.gan.max_epochs) * (n["train"] * rates.per_image(combo, "train_step")
                                                                 + n["val"] * rates.per_image(combo, "forward"))  # fmt: skip
        out.append(job)
    return out


def _evaluation_seconds(combo: Combination, cfg: DictConfig, cached_test: int, rates: Rates) -> float:
    ev = cfg.evaluate
    methods = scored_method_names(cfg)
    n = min(int(ev.max_images), cached_test)
    auc = min(int(ev.auc_images), n)
    road = min(int(ev.road_images), auc)
    sanity = min(int(ev.get("sanity_images") or 0), auc)
    maps = sum(rates.explain(combo, m) for m in methods)
    seconds = n * (maps + len(methods) * rates.forward_scaled(combo, "scores_per_map"))
    seconds += auc * len(methods) * rates.forward_scaled(combo, "deletion_insertion_per_map")
    seconds += road * len(methods) * rates.forward_scaled(combo, "road_per_map")
    if "gan" in methods and ev.get("condition_importance", True):
        seconds += auc * rates.measured["evaluation"]["condition_importance"]["s_per_image"]
    if sanity:  # every cascade step: the CGMAs and every method's map again
        cascade = rates.backbone(combo.backbone)["cascade"]
        seconds += sanity * cascade * (rates.per_image(combo, "cgma_precompute") + maps)
    return seconds


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f}" if seconds >= 360 else f"{seconds / 3600:.2f}"


def report(jobs: list[Job], rates: Rates) -> list[str]:
    """One line per job and the totals."""
    lines = [f"Estimated cost per job, in hours, from {rates.source}.",
             "Published image counts; a classifier or CGMA cache shared by several jobs is counted once, in the "
             "first job that needs it; data decoding left out (loader workers overlap it).", "",
             f"{'sweep':15s} {'job':52s} {'classifiers':>16s} {'CGMA':>7s} {'GAN':>7s} {'eval':>7s} {'total':>7s}"]  # fmt: skip
    for job in jobs:
        clf = f"{job.classifiers_trained} new {hours(job.seconds['classifiers']):>5s}"
        lines.append(f"{job.sweep:15s} {' '.join(job.overrides)[:52]:52s} {clf:>16s} {hours(job.seconds['cgma']):>7s} "
                     f"{hours(job.seconds['gan']):>7s} {hours(job.seconds['evaluation']):>7s} {hours(job.total):>7s}")  # fmt: skip
    total = {stage: sum(j.seconds[stage] for j in jobs) for stage in STAGES}
    trained = sum(j.classifiers_trained for j in jobs)
    shared = sum(j.classifiers_shared for j in jobs)
    lines += ["", f"{len(jobs)} jobs; {trained} classifiers trained once and reused {shared} times by later jobs "
              f"(shared across GAN seeds and ablations).",
              "total hours: " + ", ".join(f"{stage} {hours(total[stage])}" for stage in STAGES)
              + f"; all {hours(sum(total.values()))} (on one device, one job at a time)"]  # fmt: skip
    return lines
