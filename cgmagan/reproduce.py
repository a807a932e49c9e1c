"""The paper's tables, each from one command: five recipes over six shared sweeps.

    python -m cgmagan.reproduce small                   # make reproduce-small: embedded data, CPU
    python -m cgmagan.reproduce small --recipe sanity   # one recipe: only the sweeps it reads
    python -m cgmagan.reproduce small --tables-only     # the tables again from finished runs
    python -m cgmagan.reproduce paper -- hydra/launcher=slurm hydra.launcher.partition=gpu

A sweep is one Hydra multirun over the seeds (3 by default: GAN training is not deterministic)
into ``<runs>/<variant>/<sweep>/``; a rerun skips the jobs that finished (``skip_finished``), so an
interrupted reproduction continues where it stopped, and jobs share the classifier and CGMA
caches. A recipe reads the runs of the sweeps it needs and writes ``<out>/<variant>/<recipe>.md``
(mean ± std over seeds, the commands that made it) and ``.png``; ``summary.md`` gathers the
headline numbers and says which of the paper's claims held. Combinations flagged at evaluation
(classifier near chance, or all-zero targets) are left out of every mean, and counted.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cgmagan.aggregate import condition_importance, load_runs, mean_std
from cgmagan.methods import NO_TRAINING_BASELINES
from cgmagan.report import plt, save_figure

VARIANTS = {  # the preset every job of a variant starts from
    "small": ["+experiment=reproduce_small"],  # the embedded default experiment on a CPU
    "paper": ["+experiment=reproduce_paper"],  # six datasets, three backbones, the paper's GAN
}
# what the ablation table reads (the GAN, its reference and the linear baseline on the same CGMAs),
# so the ablation jobs skip the other methods, ROAD and condition importance
ABLATION_EVALUATION = ["evaluate.methods=[gradcam,gan,linear_cgma]", "evaluate.road_images=0", "evaluate.condition_importance=false"]
# sweep name -> its overrides besides the variant's and the seeds; the LSFT jobs are every
# ablation's reference, so no setting is run twice
SWEEPS = {
    "lsft": ["conditioning=lsft", "evaluate.methods=null"],  # null: every method, Score-CAM too
    "gsft": ["conditioning=gsft"],  # the other methods' maps: the LSFT job's of the seed (same classifiers, CGMAs)
    "cgma_k": ["cgma.k=1,2,4", *ABLATION_EVALUATION],
    "cgma_order": ["cgma.order=backward", *ABLATION_EVALUATION],
    "cgma_single": ["cgma.cumulative=false", *ABLATION_EVALUATION],
    "exclude_target": ["cgma.k=7", "cgma.exclude_target_layer=false,true", *ABLATION_EVALUATION],  # the same K both ways
    "adversarial": ["gan.lambda_adv=0", *ABLATION_EVALUATION],
}
GANS = ("lsft", "gsft")
KINDS = ("seen", "unseen_backbone", "unseen_dataset", "unseen_both")
UNSEEN = KINDS[1:]
LEARNED = ("gan", "linear_cgma")
PAPER = {"average_drop": 9.95, "win_vs_gradcam": 53.9, "unseen_dice": 0.6588}  # LSFT-GAN (paper-summary.md)

Cell = tuple[float, float, int]  # mean, std over seeds, runs


# ---------------------------------------------------------------- runs and cells


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
    return f"{cell[0]:.{digits}f} ± {cell[1]:.{digits}f}" if cell else "–"


def verdict(a: Cell, b: Cell | float) -> str:
    """Whether ``a`` is above ``b`` (a cell or a threshold) by more than the seeds' spread."""
    b_mean, b_std = (b[0], b[1]) if isinstance(b, tuple) else (b, 0.0)
    margin = max(a[1], b_std)
    return "**yes**" if a[0] - b_mean > margin else "**no**" if b_mean - a[0] > margin else "within the seed spread"


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
    if flagged:
        lines += ["", f"Left out as flagged (classifier near chance or all-zero targets) in some run: {', '.join(flagged)}."]
    accuracy = {}
    for run in runs:
        for c in run["results"]["combinations"]:
            accuracy.setdefault(f"{c['dataset']}/{c['backbone']}", []).append(c["classifier_accuracy"])
    lines += ["", "Classifier test accuracy (mean over runs): " + ", ".join(f"{k} {np.mean(v):.1%}" for k, v in accuracy.items()) + "."]
    return lines


def method_rows(sweeps: dict[str, list[dict]]) -> list[tuple[str, list[dict], str]]:
    """(label, runs, method): the two GANs from their own runs, every other method from the LSFT
    runs (the same classifiers and CGMAs as the GSFT runs of a seed, so the same maps)."""
    lsft, gsft = sweeps["lsft"], sweeps["gsft"]
    found = [m for run in lsft for c in run["results"]["combinations"] for m in c["methods"]]
    others = [m for m in dict.fromkeys(found) if m != "gan"]
    order = ["gradcam", "gradcam_pp", "scorecam", "layercam", "hirescam", "linear_cgma", *NO_TRAINING_BASELINES]
    others.sort(key=lambda m: order.index(m) if m in order else len(order))
    return [("GAN (LSFT)", lsft, "gan"), ("GAN (GSFT)", gsft, "gan"), *((m, lsft, m) for m in others)]


# ---------------------------------------------------------------- the five recipes


FAITHFULNESS = (  # score, column header
    ("average_drop", "AD % ↓"), ("increase_in_confidence", "IC % ↑"), ("average_drop_top50", "AD top 50 % ↓"),
    ("average_drop_top15", "AD top 15 % ↓"), ("win_vs_gradcam", "Win vs Grad-CAM %"), ("deletion_auc", "deletion AUC ↓"),
    ("insertion_auc", "insertion AUC ↑"), ("road_morf", "ROAD MoRF ↓"), ("road_lerf", "ROAD LeRF ↑"),
    ("pointing_game", "pointing game % ↑"), ("energy_in_mask", "energy in mask % ↑"),
)  # fmt: skip
PERCENT = {"average_drop", "increase_in_confidence", "average_drop_top50", "average_drop_top15", "win_vs_gradcam",
           "pointing_game", "energy_in_mask"}  # fmt: skip


def faithfulness(sweeps: dict[str, list[dict]]) -> tuple[list[str], object]:
    settings = sweeps["lsft"][0]["results"]["settings"]
    n = sweeps["lsft"][0]["results"]["combinations"][0]
    lines = ["Protocols: Average Drop, Increase in Confidence and Win % as in Grad-CAM++ (Win: the share of images "
             "where the method's drop is below Grad-CAM's, ties counting half), on the masked image `x ⊙ map`, on the full map and on each "
             "map's top 50 % and 15 % of pixels (TAME / L-CAM); deletion (to zeros) and insertion (from a Gaussian "
             f"blur) AUC as in RISE, {settings['deletion_steps']} steps; ROAD through the grad-cam package (noisy linear "
             f"imputation, most / least relevant first, confidence change averaged over percentiles "
             f"{settings['road_percentiles']}); pointing game and energy in the object mask on datasets with masks. "
             f"Per combination: {n['n_test']} test images, {n['n_auc']} for deletion / insertion, {n['n_road']} for ROAD."]  # fmt: skip
    rows = method_rows(sweeps)
    for title, kinds in (("Seen combinations", ["seen"]), ("Unseen combinations", list(UNSEEN))):
        lines += ["", f"### {title}", ""]
        lines += table(["method", *(h for _, h in FAITHFULNESS)],
                       [[label, *(fmt(score_cell(r, m, s, kinds), 2 if s in PERCENT else 3) for s, _ in FAITHFULNESS)]
                        for label, r, m in rows])  # fmt: skip
    lines += ["", f"Paper (LSFT-GAN, their datasets and backbones): Average Drop {PAPER['average_drop']} %, "
              f"Win {PAPER['win_vs_gradcam']} % against Grad-CAM."]  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, score in zip(axes, ("average_drop", "deletion_auc", "insertion_auc")):
        x = np.arange(len(rows))
        for i, (title, kinds) in enumerate((("seen", ["seen"]), ("unseen", list(UNSEEN)))):
            cells = [score_cell(r, m, score, kinds) or (np.nan, 0.0, 0) for _, r, m in rows]
            ax.bar(x + (i - 0.5) * 0.4, [c[0] for c in cells], 0.4, yerr=[c[1] for c in cells], capsize=2, label=title)
        ax.set_xticks(x, [label for label, _, _ in rows], rotation=60, ha="right", fontsize=7)
        ax.set_title(dict(FAITHFULNESS)[score], fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return lines, fig


AGREEMENT = (("dice_matched_area", "Dice@20 %"), ("dice", "Dice@0.5"), ("pearson", "Pearson"), ("mae", "MAE ↓"))


def unseen(sweeps: dict[str, list[dict]]) -> tuple[list[str], object]:
    rows = [r for r in method_rows(sweeps) if r[2] in ("gan", "linear_cgma", *NO_TRAINING_BASELINES)]
    lines = ["Agreement of each explainer's map with the classifier's Grad-CAM (the GAN's training target) on the test "
             "images of each kind of combination: seen in GAN training, or with a backbone, a dataset or both that it "
             "never saw. `best no-training` is the best of " + ", ".join(NO_TRAINING_BASELINES) + " per kind."]  # fmt: skip
    for score, header in AGREEMENT:
        lower = score == "mae"
        lines += ["", f"### {header}", ""]
        body = []
        for kind in KINDS:
            cells = [score_cell(r, m, score, [kind]) for _, r, m in rows]
            baselines = [(m, c) for (_, _, m), c in zip(rows, cells) if m in NO_TRAINING_BASELINES and c]
            best = (min if lower else max)(baselines, key=lambda mc: mc[1][0]) if baselines else None
            gan = cells[0]
            beats = "–" if not (gan and best) else verdict(best[1], gan) if lower else verdict(gan, best[1])
            body.append([kind, *(fmt(c) for c in cells), f"{best[0]} {fmt(best[1])}" if best else "–", beats.strip("*")])
        lines += table(["kind", *(label for label, _, _ in rows), "best no-training", "LSFT beats it"], body)
    lines += ["", f"Paper: LSFT-GAN Dice {PAPER['unseen_dice']} on unseen architecture / dataset combinations."]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, (score, header) in zip(axes, AGREEMENT[:3:2]):
        x = np.arange(len(KINDS))
        width = 0.8 / len(rows)
        for i, (label, r, m) in enumerate(rows):
            cells = [score_cell(r, m, score, [k]) or (np.nan, 0.0, 0) for k in KINDS]
            ax.bar(x + (i - len(rows) / 2 + 0.5) * width, [c[0] for c in cells], width, yerr=[c[1] for c in cells],
                   capsize=1.5, label=label)  # fmt: skip
        ax.set_xticks(x, KINDS, fontsize=8)
        ax.set_title(header, fontsize=9)
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return lines, fig


ABLATIONS = (  # row, sweep, config values that pick its runs
    ("default", "lsft", {}),
    ("GSFT instead of LSFT", "gsft", {}),
    ("K = 1 (the last CGMA only)", "cgma_k", {"cgma__k": 1}),
    ("K = 2", "cgma_k", {"cgma__k": 2}),
    ("K = 4", "cgma_k", {"cgma__k": 4}),
    ("backward order (the original code's)", "cgma_order", {}),
    ("single layers' Grad-CAMs, not CGMAs", "cgma_single", {}),
    ("K = 7, target layer in", "exclude_target", {"cgma__exclude_target_layer": False}),
    ("K = 7, target layer excluded", "exclude_target", {"cgma__exclude_target_layer": True}),
    ("adversarial weight 0 (L1 only)", "adversarial", {}),
)


def describe_default(run: dict) -> str:
    cgma = setting(run, "cgma")
    return (f"{setting(run, 'conditioning.name').upper()}, K = {cgma['k']}, {cgma['order']} order, "
            f"{'CGMAs' if cgma.get('cumulative', True) else 'single layers'}, target layer "
            f"{'excluded' if cgma['exclude_target_layer'] else 'in'}, adversarial weight {setting(run, 'gan.lambda_adv')}")  # fmt: skip


def ablation_rows(sweeps: dict[str, list[dict]]) -> list[tuple[str, list[dict]]]:
    return [(label, pick(sweeps[sweep], **where)) for label, sweep, where in ABLATIONS]


def ablation_table(sweeps: dict[str, list[dict]]) -> list[str]:
    rows = ablation_rows(sweeps)
    default = rows[0][1]
    lines = [f"The GAN's agreement with Grad-CAM (Dice@20 %) per kind of combination, one setting changed at a time "
             f"from the default ({describe_default(default[0])}). `Δ unseen` is the change of the mean over the three "
             "unseen kinds against the default; `linear_cgma` is the linear baseline on the same conditions (its "
             "mean over the unseen kinds). AD: Average Drop, all combinations; MPRT ρ: rank correlation with the "
             "map of a fully randomised classifier (below 0.5 passes).", ""]  # fmt: skip
    reference = kinds_mean_cell(default, "gan", "dice_matched_area")
    body = []
    for label, runs in rows:
        cells = [score_cell(runs, "gan", "dice_matched_area", [k]) for k in KINDS]
        mean = kinds_mean_cell(runs, "gan", "dice_matched_area")
        delta = f"{mean[0] - reference[0]:+.3f}" if mean and reference else "–"
        body.append([label, *(fmt(c) for c in cells), delta, fmt(kinds_mean_cell(runs, "linear_cgma", "dice_matched_area")),
                     fmt(score_cell(runs, "gan", "pearson")), fmt(score_cell(runs, "gan", "average_drop"), 2),
                     fmt(score_cell(runs, "gan", "randomisation_spearman")), str(len(runs))])  # fmt: skip
    return lines + table(["setting", *KINDS, "Δ unseen", "linear_cgma", "Pearson", "AD %", "MPRT ρ", "runs"], body)


def ablations(sweeps: dict[str, list[dict]]) -> tuple[list[str], object]:
    rows = ablation_rows(sweeps)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    y = np.arange(len(rows))
    for i, kind in enumerate(KINDS):
        cells = [score_cell(runs, "gan", "dice_matched_area", [kind]) or (np.nan, 0.0, 0) for _, runs in rows]
        ax.barh(y + (i - 1.5) * 0.2, [c[0] for c in cells], 0.2, xerr=[c[1] for c in cells], capsize=1.5, label=kind)
    ax.set_yticks(y, [label for label, _ in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("GAN Dice@20 % with Grad-CAM (mean ± std over seeds)")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return ablation_table(sweeps), fig


def importance(sweeps: dict[str, list[dict]]) -> tuple[list[str], object]:
    runs = [{**run, "variant": name.upper()} for name in GANS for run in sweeps[name]]
    slots = condition_importance(runs)
    first = runs[0]["results"]["combinations"][0]["condition_importance"]
    lines = [f"The trained GAN's map with CGMA slot k replaced, by zeros or by the same slot of another test image, on "
             f"{first['n_images']} images per combination: its Dice@0.5 with Grad-CAM and the mean absolute change of "
             "the map. Slot 1 is the earliest layers' average, slot K includes the target layer. The paper: \"the "
             "initial layers of CNNs and final layers are equally crucial for explaining CNNs\"."]  # fmt: skip
    reference = {name.upper(): score_cell(sweeps[name], "gan", "dice") for name in GANS}
    lines += ["", "Unchanged, the GANs' Dice@0.5 over all test images is " + ", ".join(f"{k} {fmt(v)}" for k, v in reference.items()) + "."]
    for variant, by_replacement in slots.items():
        lines += ["", f"### {variant}", ""]
        replacements = list(by_replacement)
        numbers = sorted({k for by_slot in by_replacement.values() for k in by_slot})
        body = [[str(k), *(fmt(by_replacement[r].get(k, {}).get(s)) for r in replacements for s in ("dice", "mean_abs_change"))]
                for k in numbers]  # fmt: skip
        lines += table(["slot", *(f"{r}: {h}" for r in replacements for h in ("Dice@0.5", "mean abs change"))], body)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for variant, by_replacement in slots.items():
        for replacement, by_slot in by_replacement.items():
            k = sorted(by_slot)
            cells = [by_slot[i]["mean_abs_change"] for i in k]
            ax.errorbar(k, [c[0] for c in cells], yerr=[c[1] for c in cells], marker="o", capsize=2, label=f"{variant}, {replacement}")
    ax.set_xlabel("CGMA slot replaced (1: earliest layers)")
    ax.set_ylabel("mean |change| of the GAN's map")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return lines, fig


def _cascade(run: dict, method: str) -> list[np.ndarray]:
    """Per combination, the method's rank correlation per randomisation step."""
    return [np.asarray(c["sanity_check"]["spearman"][method]) for c in combos(run)
            if c.get("sanity_check") and method in c["sanity_check"]["spearman"]]  # fmt: skip


def sanity(sweeps: dict[str, list[dict]]) -> tuple[list[str], object]:
    rows = method_rows(sweeps)
    check = next(c["sanity_check"] for run in sweeps["lsft"] for c in run["results"]["combinations"] if c.get("sanity_check"))
    below = check["pass_below"]
    lines = [f"Model parameter randomisation (Adebayo et al. 2018, cascading from the logits down, as Quantus's MPRT): "
             f"the Spearman rank correlation between each method's map for the trained classifier and for the "
             f"classifier with its top layers randomised, on {check['n_images']} images per combination. A method "
             f"whose map still correlates at {below} or more once every layer is random does not depend on the model: "
             "it fails."]  # fmt: skip

    def at(run: dict, method: str, fraction: float) -> float | None:
        """The mean correlation once ``fraction`` of the layers are random (0: the logits layer only)."""
        cascades = _cascade(run, method)
        return float(np.mean([c[min(len(c) - 1, int(fraction * len(c)))] for c in cascades])) if cascades else None

    body = []
    for label, runs, method in rows:
        cells = [over_seeds(runs, lambda run, m=method, f=f: at(run, m, f)) for f in (0.0, 0.5, 1.0)]
        finals = [c[-1] for run in runs for c in _cascade(run, method)]
        passed = sum(v < below for v in finals)
        outcome = "passes" if finals and passed == len(finals) else "fails" if passed == 0 else "mixed"
        body.append([label, *(fmt(c) for c in cells), f"{passed} of {len(finals)}", outcome])
    lines += ["", *table(["method", "ρ, logits layer random", "ρ, half the layers", "ρ, every layer random",
                          "combinations passing", "verdict"], body)]  # fmt: skip
    fig, ax = plt.subplots(figsize=(7, 3.6))
    grid = np.linspace(0, 1, 11)
    for label, runs, method in rows:
        curves = [np.interp(grid, np.linspace(0, 1, len(c)), c) for run in runs for c in _cascade(run, method)]
        if curves:
            ax.plot(grid, np.mean(curves, 0), marker="o" if label.startswith("GAN") else None, label=label,
                    lw=2.5 if label.startswith("GAN") else 1)  # fmt: skip
    ax.axhline(below, color="grey", ls="--", lw=1)
    ax.set_xlabel("share of layers randomised (from the logits down)")
    ax.set_ylabel("Spearman ρ with the original map")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return lines, fig


@dataclass(frozen=True)
class Recipe:
    title: str
    sweeps: tuple[str, ...]
    write: Callable[[dict[str, list[dict]]], tuple[list[str], object]]


RECIPES = {
    "faithfulness": Recipe("Faithfulness: the GANs, the CAM methods and the baselines", GANS, faithfulness),
    "unseen": Recipe("Seen and unseen dataset / backbone combinations", GANS, unseen),
    "ablations": Recipe("Ablations", tuple(SWEEPS), ablations),
    "condition_importance": Recipe("Condition importance per CGMA slot", GANS, importance),
    "sanity": Recipe("Sanity check: model parameter randomisation", GANS, sanity),
}


# ---------------------------------------------------------------- claims


def claims(sweeps: dict[str, list[dict]]) -> list[tuple[str, str, str]]:
    """(claim, what we measured, verdict) for the paper's claims and ours that the sweeps can test:
    yes / no when the difference is larger than the spread over seeds, else "within the seed spread"."""
    lsft, gsft = sweeps["lsft"], sweeps["gsft"]
    out = []
    l_unseen, g_unseen = kinds_mean_cell(lsft, "gan", "dice_matched_area"), kinds_mean_cell(gsft, "gan", "dice_matched_area")
    if l_unseen and g_unseen:
        out.append(("LSFT beats GSFT on unseen combinations (paper)",
                    f"Dice@20 % {fmt(l_unseen)} vs {fmt(g_unseen)}", verdict(l_unseen, g_unseen)))  # fmt: skip
    ad, ad_gradcam = score_cell(lsft, "gan", "average_drop"), score_cell(lsft, "gradcam", "average_drop")
    if ad and ad_gradcam:  # lower is better: Grad-CAM's drop above the GAN's
        out.append(("LSFT's Average Drop is below Grad-CAM's (paper: 9.95 %)",
                    f"{fmt(ad, 2)} % vs {fmt(ad_gradcam, 2)} %", verdict(ad_gradcam, ad)))  # fmt: skip
    if win := score_cell(lsft, "gan", "win_vs_gradcam"):
        out.append(("LSFT wins against Grad-CAM on more than half the images (paper: 53.9 %)", f"{fmt(win, 1)} %", verdict(win, 50.0)))
    if both := score_cell(lsft, "gan", "dice", ["unseen_both"]):
        out.append((f"Dice with Grad-CAM on unseen dataset and backbone at least the paper's {PAPER['unseen_dice']}",
                    f"Dice@0.5 {fmt(both)}", verdict(both, PAPER["unseen_dice"])))  # fmt: skip
    for kind in UNSEEN:
        gan = score_cell(lsft, "gan", "dice_matched_area", [kind])
        base = [(m, c) for m in NO_TRAINING_BASELINES if (c := score_cell(lsft, m, "dice_matched_area", [kind]))]
        linear = score_cell(lsft, "linear_cgma", "dice_matched_area", [kind])
        if gan and base:
            name, best = max(base, key=lambda mc: mc[1][0])
            out.append((f"LSFT beats every no-training baseline on {kind} (ours)",
                        f"Dice@20 % {fmt(gan)} vs {name} {fmt(best)}", verdict(gan, best)))  # fmt: skip
        if gan and linear:
            out.append((f"LSFT beats the linear baseline on {kind} (ours)", f"{fmt(gan)} vs {fmt(linear)}", verdict(gan, linear)))
    slots = condition_importance([{**run, "variant": "lsft"} for run in lsft]).get("lsft", {}).get("zeros")
    if slots:
        first, last = slots[min(slots)]["mean_abs_change"], slots[max(slots)]["mean_abs_change"]
        equal = min(first[0], last[0]) >= 0.5 * max(first[0], last[0])
        out.append(("The earliest and the final CGMA matter equally (paper; within a factor 2)",
                    f"zeroing slot {min(slots)} changes the map by {fmt(first)}, slot {max(slots)} by {fmt(last)}",
                    "**yes**" if equal else "**no**"))  # fmt: skip
    if rho := score_cell(lsft, "gan", "randomisation_spearman"):  # lower is better
        out.append(("LSFT's map depends on the model (MPRT ρ with every layer random below 0.5)", f"ρ {fmt(rho)}",
                    verdict((0.5, 0.0, 1), rho)))  # fmt: skip
    return out


def summary(sweeps: dict[str, list[dict]], variant: str) -> list[str]:
    """The headline numbers and the claims, for the README."""
    lsft, gsft = sweeps["lsft"], sweeps["gsft"]
    command = f"python -m cgmagan.reproduce {variant}"
    lines = [f"Regenerate everything here: `{command}` (tables and plots in `experiments/results/{variant}/`); one "
             f"table: `{command} --recipe NAME`. {len(lsft)} runs of LSFT and {len(gsft)} of GSFT over seeds "
             f"{', '.join(sorted({str(r['results'].get('seed')) for r in lsft + gsft}))}, mean ± std.", "",
             "| kind | GAN (LSFT) | GAN (GSFT) | linear_cgma | best no-training | Grad-CAM++ |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for kind in KINDS:
        base = [(m, c) for m in NO_TRAINING_BASELINES if (c := score_cell(lsft, m, "dice_matched_area", [kind]))]
        best = max(base, key=lambda mc: mc[1][0]) if base else None
        lines.append(f"| {kind} | {fmt(score_cell(lsft, 'gan', 'dice_matched_area', [kind]))} | "
                     f"{fmt(score_cell(gsft, 'gan', 'dice_matched_area', [kind]))} | "
                     f"{fmt(score_cell(lsft, 'linear_cgma', 'dice_matched_area', [kind]))} | "
                     f"{f'{best[0]} {fmt(best[1])}' if best else '–'} | {fmt(score_cell(lsft, 'gradcam_pp', 'dice_matched_area', [kind]))} |")  # fmt: skip
    lines += ["", "(Dice@20 % with the classifier's Grad-CAM: `--recipe unseen`.)", "", "| claim | measured | held |", "|---|---|---|"]
    lines += [f"| {c} | {m} | {v} |" for c, m, v in claims(sweeps)]
    if all(name in sweeps for name in SWEEPS):
        lines += ["", f"Ablations (`{command} --recipe ablations`):", "", *ablation_table(sweeps)]
    return lines


# ---------------------------------------------------------------- running


def sweep_command(python: str, variant: str, sweep: str, seeds: str, runs_dir: Path, extra: list[str],
                  classifier_seed: str = "0") -> list[str]:  # fmt: skip
    """The sweep over GAN seeds ``seeds``; the classifiers (and data splits) are those of
    ``classifier_seed``, shared by every GAN seed, or each seed's own when it is "each"."""
    shared = [] if classifier_seed == "each" else [f"classifier.seed={classifier_seed}"]
    return [python, "run.py", "-m", f"seed={seeds}", *shared, *VARIANTS[variant], *SWEEPS[sweep],
            f"hydra.sweep.dir={runs_dir / variant / sweep}", *extra]  # fmt: skip


def load_sweeps(runs_dir: Path, variant: str, names) -> dict[str, list[dict]]:
    return {name: load_runs(runs_dir / variant / name) for name in names}


def write_recipe(name: str, sweeps: dict[str, list[dict]], variant: str, out: Path) -> Path:
    recipe = RECIPES[name]
    lines, fig = recipe.write(sweeps)
    runs = [run for sweep in recipe.sweeps for run in sweeps[sweep]]
    text = [f"# {recipe.title} ({variant})", "", *provenance(runs, f"python -m cgmagan.reproduce {variant} --recipe {name}"), "", *lines]
    folder = out / variant
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.md").write_text("\n".join(text) + "\n")
    save_figure(fig, folder / f"{name}.png", bbox_inches="tight")
    return folder / f"{name}.md"


README_START, README_END = "<!-- reproduce-small: start -->", "<!-- reproduce-small: end -->"


def update_readme(readme: Path, lines: list[str]) -> None:
    """Replace the block between the README's markers with ``lines``."""
    text = readme.read_text()
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    readme.write_text(head + README_START + "\n" + "\n".join(lines) + "\n" + README_END + tail)


def print_estimate(args, sweeps: list[str]) -> None:
    """Every job of ``sweeps`` with its estimated cost per stage (cgmagan.cost)."""
    from cgmagan import cost

    shared = [] if args.classifier_seed == "each" else [f"classifier.seed={args.classifier_seed}"]
    jobs = []
    for sweep in sweeps:
        for swept, overrides in cost.expand([f"seed={args.seeds}", *SWEEPS[sweep]]):
            jobs.append((sweep, swept, [*overrides, *shared, *VARIANTS[args.variant], *args.overrides]))
    rates = cost.Rates.load(args.rates)
    try:
        lines = cost.report(cost.estimate(jobs, rates), rates)
    except cost.NotEstimated as err:
        lines = [f"no cost estimate: {err}"]
    print("\n" + "\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("--recipe", action="append", choices=sorted(RECIPES), help="only these (repeatable); default: all")
    parser.add_argument("--seeds", default="0,1,2", help="GAN seeds")
    parser.add_argument("--classifier-seed", default="0",
                        help="the classifiers' (and data splits') seed, shared by every GAN seed; 'each': a classifier per seed")
    parser.add_argument("--runs", type=Path, default=Path("experiments/runs"))
    parser.add_argument("--out", type=Path, default=Path("experiments/results"))
    parser.add_argument("--tables-only", action="store_true", help="run nothing: tables from the runs already there")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the sweeps' commands and every job's estimated cost per stage, and stop")
    parser.add_argument("--rates", type=Path, default=Path("benchmarks/paper_scale.json"),
                        help="the measurements the --dry-run estimate multiplies (benchmarks/paper_scale.py)")
    parser.add_argument("--readme", type=Path, help="fill this README's reproduce block with the summary")
    parser.epilog = "Hydra overrides for every job (launcher, paths, trainer) go after --."
    argv = sys.argv[1:] if argv is None else list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.overrides = argv[split + 1 :]
    names = args.recipe or list(RECIPES)
    needed = list(dict.fromkeys(s for name in names for s in RECIPES[name].sweeps))
    if args.readme and README_START not in args.readme.read_text():
        raise SystemExit(f"{args.readme} has no {README_START} ... {README_END} block to fill")
    if not args.tables_only:
        if not Path("run.py").is_file():
            raise SystemExit("run from the repository root (where run.py is)")
        start = time.monotonic()
        for i, sweep in enumerate(needed, 1):
            command = sweep_command(sys.executable, args.variant, sweep, args.seeds, args.runs, args.overrides,
                                    args.classifier_seed)  # fmt: skip
            print(f"[sweep {i} of {len(needed)}, {(time.monotonic() - start) / 60:.1f} min in] "
                  + " ".join(shlex.quote(c) for c in command), flush=True)  # fmt: skip
            if not args.dry_run:
                subprocess.run(command, check=True)
        if not args.dry_run:
            print(f"{len(needed)} sweeps in {(time.monotonic() - start) / 60:.1f} min", flush=True)
        if args.dry_run:
            print_estimate(args, needed)
            return {}
    sweeps = load_sweeps(args.runs, args.variant, needed)
    written = {name: write_recipe(name, sweeps, args.variant, args.out) for name in names}
    if all(name in sweeps for name in GANS):
        lines = summary(sweeps, args.variant)
        (args.out / args.variant / "summary.md").write_text(f"# Summary ({args.variant})\n\n" + "\n".join(lines) + "\n")
        if args.readme:
            update_readme(args.readme, lines)
    for name, path in written.items():
        print(f"{name}: {path}")
    return written


if __name__ == "__main__":
    main()
