"""Cells of the recipes' tables: a score of some runs, averaged per run and then over seeds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from cgmagan.aggregate import mean_std
from cgmagan.methods import NO_TRAINING_BASELINES, scores_fewer

GANS = ("lsft", "gsft")
KINDS = ("seen", "unseen_backbone", "unseen_dataset", "unseen_both")
UNSEEN = KINDS[1:]
LEARNED = ("gan", "linear_cgma")
PAPER = {"average_drop": 9.95, "win_vs_gradcam": 53.9, "unseen_dice": 0.6588}  # LSFT-GAN (paper-summary.md)

Cell = tuple[float, float, int]  # mean, std over seeds, runs


def setting(run: dict, dotted: str):
    """A run's resolved config value, e.g. ``setting(run, "cgma.k")``."""
    node = run["results"]["config"]
    for part in dotted.split("."):
        node = node[part]
    return node


def pick(runs: list[dict], **where) -> list[dict]:
    """The runs whose config has these values (``cgma__k=1`` for ``cgma.k``)."""
    return [r for r in runs if all(setting(r, key.replace("__", ".")) == value for key, value in where.items())]


def combos(run: dict, kinds=None) -> list[dict]:
    """A run's combinations of ``kinds`` (all when None), flagged ones left out."""
    return [c for c in run["results"]["combinations"] if (kinds is None or c["kind"] in kinds) and not c.get("flagged")]


def run_mean(run: dict, method: str, score: str, kinds=None) -> float | None:
    """One run's ``score`` of ``method`` averaged over its combinations of ``kinds``."""
    values = [c["methods"][method][score] for c in combos(run, kinds)
              if c["methods"].get(method, {}).get(score) is not None]  # fmt: skip
    return float(np.mean(values)) if values else None


def over_seeds(runs: list[dict], per_run: Callable[[dict], float | None]) -> Cell | None:
    values = [v for run in runs if (v := per_run(run)) is not None]
    return mean_std(values) if values else None


def score_cell(runs: list[dict], method: str, score: str, kinds=None) -> Cell | None:
    return over_seeds(runs, lambda run: run_mean(run, method, score, kinds))


def kinds_mean_cell(runs: list[dict], method: str, score: str, kinds=UNSEEN) -> Cell | None:
    """Per run, the mean of its per-kind means (each kind weighs the same), then over seeds."""

    def per_run(run):
        means = [m for kind in kinds if (m := run_mean(run, method, score, [kind])) is not None]
        return float(np.mean(means)) if means else None

    return over_seeds(runs, per_run)


def fmt(cell: Cell | None, digits: int = 3) -> str:
    """"mean ± std" over seeds; one run's value alone (it has no spread to show)."""
    if not cell:
        return "–"
    return f"{cell[0]:.{digits}f}" if cell[2] < 2 else f"{cell[0]:.{digits}f} ± {cell[1]:.{digits}f}"


def scored_runs(runs: list[dict], method: str) -> int:
    """How many of ``runs`` scored ``method`` (evaluate.methods_other_seeds: fewer than ran)."""
    return sum(any(method in c["methods"] for c in run["results"]["combinations"]) for run in runs)


def verdict(a: Cell | float, b: Cell | float) -> str:
    """Whether ``a`` is above ``b`` (each a cell or a threshold) by more than the seeds' spread; a
    cell of one run has no spread to judge by, and says so."""
    if any(isinstance(c, tuple) and c[2] < 2 for c in (a, b)):
        return "one run: no seed spread to judge by"
    (a_mean, a_std), (b_mean, b_std) = ((c[0], c[1]) if isinstance(c, tuple) else (c, 0.0) for c in (a, b))
    margin = max(a_std, b_std)
    return "**yes**" if a_mean - b_mean > margin else "**no**" if b_mean - a_mean > margin else "within the seed spread"


def seed_free(cell: Cell | None, runs: list[dict]) -> Cell | float | None:
    """A method other than the GAN, read from ``runs`` that share one classifier seed, as the exact
    number it is: its maps do not depend on the GAN seed, so every job would give the same score (and
    the jobs of the other seeds may skip it: ``evaluate.methods_other_seeds``). ``verdict`` then
    judges by the GAN's spread alone. Runs of different classifier seeds keep their cell."""
    seeds = {run["results"].get("classifier_seed") for run in runs}
    return cell[0] if cell and len(seeds) == 1 and None not in seeds else cell


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1),
            *("| " + " | ".join(row) + " |" for row in rows)]  # fmt: skip


def provenance(runs: list[dict], command: str) -> list[str]:
    """What made the table: the command that regenerates it, the sweeps' commands, runs and seeds,
    and the combinations left out as flagged."""
    seeds = sorted({run["results"].get("seed") for run in runs}, key=str)
    classifier_seeds = sorted({run["results"].get("classifier_seed", run["results"].get("seed")) for run in runs}, key=str)
    flagged = sorted({f"{c['dataset']}/{c['backbone']}" for run in runs for c in run["results"]["combinations"] if c.get("flagged")})
    what_varied = (f"GAN seeds {', '.join(map(str, seeds))} over the classifiers and data splits of classifier.seed "
                   f"{', '.join(map(str, classifier_seeds))}" if len(classifier_seeds) < len(seeds)
                   else f"seeds {', '.join(map(str, seeds))}, each with its own classifiers and data splits")  # fmt: skip
    lines = [f"Regenerate: `{command}`", "", f"{len(runs)} runs, {what_varied}; "
             "mean ± std over seeds of each run's mean over combinations. Sweeps:", ""]  # fmt: skip
    lines += [f"- `{c}`" for c in sorted({run["results"]["command"] for run in runs})]
    fewer = {str(run["results"]["seed"]): scored for run in runs if (scored := _scored_fewer(run))}
    if fewer:
        lines += ["", f"The jobs of GAN seeds {', '.join(sorted(fewer))} scored only {next(iter(fewer.values()))} "
                  "(evaluate.methods_other_seeds): every other method's maps are the same in each job of one classifier "
                  "seed, so its row is that seed's job (exact; its sanity check is one randomisation)."]  # fmt: skip
    if flagged:
        lines += ["", f"Left out as flagged (classifier near chance or all-zero targets) in some run: {', '.join(flagged)}."]
    accuracy = {}
    for run in runs:
        for c in run["results"]["combinations"]:
            accuracy.setdefault(f"{c['dataset']}/{c['backbone']}", []).append(c["classifier_accuracy"])
    lines += ["", "Classifier test accuracy (mean over runs): " + ", ".join(f"{k} {np.mean(v):.1%}" for k, v in accuracy.items()) + "."]
    return lines + training_lines(runs)


def run_label(run: dict) -> str:
    """The run's name in a sentence: its sweep, the settings that set it apart from the sweep's others, its seed."""
    path = run.get("path")
    sweep = Path(path).parent.parent.name if path else "run"
    variant = run.get("variant")
    return f"{sweep}{f' ({variant})' if variant and variant != '(every run)' else ''} seed {run['results'].get('seed')}"


def training_lines(runs: list[dict]) -> list[str]:
    """How the runs' GANs stopped: by the plateau rule (after how many steps) or at the epoch cap,
    naming every capped run with the step of its best checkpoint. Nothing for runs that loaded a GAN."""
    trained = [(run, t) for run in runs if (t := run["results"].get("gan_training")) and t.get("steps")]
    if not trained:
        return []
    plateau = [t["steps"] for _, t in trained if t["stopped_by"] == "plateau"]
    capped = [(run, t) for run, t in trained if t["stopped_by"] != "plateau"]
    text = (f"GAN training: {len(plateau)} of {len(trained)} runs stopped by the plateau rule (gan.patience validations "
            "without the monitored score improving by gan.min_delta)")  # fmt: skip
    if plateau:
        text += f" after {min(plateau):,}-{max(plateau):,} steps" if min(plateau) != max(plateau) else f" after {plateau[0]:,} steps"
    if capped:
        text += "; at the epoch cap (gan.max_epochs): " + ", ".join(_capped(run, t) for run, t in capped)
    return ["", text + "."]


def _capped(run: dict, training: dict) -> str:
    best = training.get("best_step")
    return f"{run_label(run)} ({training['steps']:,} steps{f'; best at {best:,}' if best is not None else ''})"


def _scored_fewer(run: dict) -> str | None:
    """The methods a job scored instead of ``evaluate.methods``, as "a, b, c"; None when it scored all."""
    results = run["results"]
    others = results.get("config", {}).get("evaluate", {}).get("methods_other_seeds")
    return ", ".join(others) if scores_fewer(others, results.get("seed"), results.get("classifier_seed")) else None


def method_rows(sweeps: dict[str, list[dict]]) -> list[tuple[str, list[dict], str]]:
    """(label, runs, method): the two GANs from their own runs, every other method from the LSFT
    runs (the same classifiers and CGMAs as the GSFT runs of a seed, so the same maps)."""
    lsft, gsft = sweeps["lsft"], sweeps["gsft"]
    found = [m for run in lsft for c in run["results"]["combinations"] for m in c["methods"]]
    others = [m for m in dict.fromkeys(found) if m != "gan"]
    order = ["gradcam", "gradcam_pp", "scorecam", "layercam", "hirescam", "linear_cgma", *NO_TRAINING_BASELINES]
    others.sort(key=lambda m: order.index(m) if m in order else len(order))
    return [("GAN (LSFT)", lsft, "gan"), ("GAN (GSFT)", gsft, "gan"), *((m, lsft, m) for m in others)]
