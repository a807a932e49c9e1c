"""The six recipes (tables and plots from the sweeps' runs), the paper's claims and the summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cgmagan.aggregate import condition_importance
from cgmagan.methods import NO_TRAINING_BASELINES
from cgmagan.report import plt
from cgmagan.reproduce.cells import (
    GANS,
    KINDS,
    PAPER,
    UNSEEN,
    combos,
    fmt,
    kinds_mean_cell,
    method_rows,
    over_seeds,
    pick,
    score_cell,
    scored_runs,
    seed_free,
    setting,
    table,
    training_lines,
    verdict,
)

# every score a recipe shows: its column header, and whether lower is better (the arrow says so)
HEADERS = {
    "average_drop": ("AD % ↓", True), "increase_in_confidence": ("IC % ↑", False),
    "average_drop_matched_area": ("AD@20 % % ↓", True), "average_drop_top50": ("AD top 50 % ↓", True),
    "average_drop_top15": ("AD top 15 % ↓", True), "win_vs_gradcam": ("Win vs Grad-CAM %", False),
    "deletion_auc": ("deletion AUC ↓", True), "insertion_auc": ("insertion AUC ↑", False),
    "road_morf": ("ROAD MoRF ↓", True), "road_lerf": ("ROAD LeRF ↑", False),
    "pointing_game": ("pointing game % ↑", False), "energy_in_mask": ("energy in mask % ↑", False),
    "dice_matched_area": ("Dice@20 %", False), "dice": ("Dice@0.5", False), "pearson": ("Pearson", False),
    "mae": ("MAE ↓", True), "randomisation_spearman": ("MPRT ρ ↓", True),
}  # fmt: skip
FAITHFULNESS = ("average_drop", "increase_in_confidence", "average_drop_top50", "average_drop_top15", "win_vs_gradcam",
                "deletion_auc", "insertion_auc", "road_morf", "road_lerf", "pointing_game", "energy_in_mask")  # fmt: skip
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
        lines += table(["method", *(HEADERS[s][0] for s in FAITHFULNESS)],
                       [[label, *(fmt(score_cell(r, m, s, kinds), 2 if s in PERCENT else 3) for s in FAITHFULNESS)]
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
        ax.set_title(HEADERS[score][0], fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return lines, fig


AGREEMENT = ("dice_matched_area", "dice", "pearson", "mae")


def unseen(sweeps: dict[str, list[dict]]) -> tuple[list[str], object]:
    rows = [r for r in method_rows(sweeps) if r[2] in ("gan", "linear_cgma", *NO_TRAINING_BASELINES)]
    lines = ["Agreement of each explainer's map with the classifier's Grad-CAM (the GAN's training target) on the test "
             "images of each kind of combination: seen in GAN training, or with a backbone, a dataset or both that it "
             "never saw. `best no-training` is the best of " + ", ".join(NO_TRAINING_BASELINES) + " per kind."]  # fmt: skip
    for score in AGREEMENT:
        header, lower = HEADERS[score]
        lines += ["", f"### {header}", ""]
        body = []
        for kind in KINDS:
            cells = [score_cell(r, m, score, [kind]) for _, r, m in rows]
            baselines = [(m, c) for (_, _, m), c in zip(rows, cells) if m in NO_TRAINING_BASELINES and c]
            best = (min if lower else max)(baselines, key=lambda mc: mc[1][0]) if baselines else None
            gan = cells[0]
            base = seed_free(best[1], sweeps["lsft"]) if best else None
            beats = "–" if not (gan and best) else verdict(base, gan) if lower else verdict(gan, base)
            body.append([kind, *(fmt(c) for c in cells), f"{best[0]} {fmt(best[1])}" if best else "–", beats.strip("*")])
        lines += table(["kind", *(label for label, _, _ in rows), "best no-training", "LSFT beats it"], body)
    lines += ["", f"Paper: LSFT-GAN Dice {PAPER['unseen_dice']} on unseen architecture / dataset combinations."]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, score in zip(axes, AGREEMENT[:3:2]):
        header = HEADERS[score][0]
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


OBJECTIVE_SCORES = ("average_drop", "average_drop_matched_area", "deletion_auc", "insertion_auc", "road_morf", "road_lerf",
                    "dice_matched_area", "randomisation_spearman")  # fmt: skip
FAITHFUL_VS_GRADCAM = ("deletion_auc", "insertion_auc", "road_morf")


def objective_rows(sweeps: dict[str, list[dict]]) -> list[tuple[str, list[dict], str]]:
    """The GAN trained for each objective (imitation: the LSFT jobs), then Grad-CAM, the package's
    CAM methods and the linear baseline (from the LSFT jobs: the same classifiers, so the same maps)."""
    runs = [*sweeps["objective"], *sweeps.get("objective_both", [])]
    rows = [("GAN, imitate Grad-CAM", sweeps["lsft"], "gan"),
            ("GAN, faithful", pick(runs, gan__module__lambda_l1=0), "gan"),
            ("GAN, both", [r for r in runs if setting(r, "gan.module.lambda_l1") > 0], "gan")]  # fmt: skip
    found = {m for run in sweeps["lsft"] for c in run["results"]["combinations"] for m in c["methods"]}
    rows += [(m, sweeps["lsft"], m) for m in ("gradcam", "gradcam_pp", "layercam", "hirescam", "linear_cgma") if m in found]
    return [row for row in rows if row[1]]


def objective_verdicts(sweeps: dict[str, list[dict]]) -> list[tuple[str, str, str]]:
    """(claim, measured, held) for the faithfulness-trained GAN against Grad-CAM, per kind and protocol."""
    rows = {label: (runs, m) for label, runs, m in objective_rows(sweeps)}
    if "GAN, faithful" not in rows:
        return []
    out = []
    for kind in KINDS:
        for score in FAITHFUL_VS_GRADCAM:
            header, lower = HEADERS[score]
            gan = score_cell(rows["GAN, faithful"][0], "gan", score, [kind])
            ref = score_cell(sweeps["lsft"], "gradcam", score, [kind])
            if gan and ref:
                out.append((f"The faithful GAN beats Grad-CAM on {kind}, {header.rsplit(' ', 1)[0]} (ours)",
                            f"{fmt(gan)} vs {fmt(ref)}", verdict(ref, gan) if lower else verdict(gan, ref)))  # fmt: skip
    return out


def objectives(sweeps: dict[str, list[dict]]) -> tuple[list[str], object]:
    rows = objective_rows(sweeps)
    lines = ["The GAN trained to imitate Grad-CAM (the paper's L1 + adversarial loss), to be faithful (TAME / L-CAM's "
             "objective: the classifier fed its image times the map keeps the explained class, with area and "
             "smoothness penalties; no L1, no discriminator; `objective=faithful`) or both (`objective=both`), beside "
             "Grad-CAM and the CAM methods, per kind of combination. The classifiers judging the maps in training are the "
             "training combinations' only: on the unseen kinds the faithful GAN explains classifiers it never saw."]  # fmt: skip
    for kind in KINDS:
        lines += ["", f"### {kind}", ""]
        lines += table(["method", *(HEADERS[s][0] if s != "dice_matched_area" else "Dice@20 % with Grad-CAM"
                                    for s in OBJECTIVE_SCORES), "runs"],
                       [[label, *(fmt(score_cell(r, m, s, [kind]), 2 if s in PERCENT or s.startswith("average_drop") else 3)
                                  for s in OBJECTIVE_SCORES), str(scored_runs(r, m))] for label, r, m in rows])  # fmt: skip
    if verdicts := objective_verdicts(sweeps):
        lines += ["", "| claim | measured | held |", "|---|---|---|", *(f"| {c} | {m} | {v} |" for c, m, v in verdicts)]
    fig, axes = plt.subplots(1, len(FAITHFUL_VS_GRADCAM), figsize=(4 * len(FAITHFUL_VS_GRADCAM), 3.6))
    x = np.arange(len(KINDS))
    shown = [row for row in rows if row[0].startswith("GAN") or row[2] == "gradcam"]
    width = 0.8 / len(shown)
    for ax, score in zip(axes, FAITHFUL_VS_GRADCAM):
        for i, (label, runs, method) in enumerate(shown):
            cells = [score_cell(runs, method, score, [k]) or (np.nan, 0.0, 0) for k in KINDS]
            ax.bar(x + (i - len(shown) / 2 + 0.5) * width, [c[0] for c in cells], width, yerr=[c[1] for c in cells],
                   capsize=1.5, label=label)  # fmt: skip
        ax.set_xticks(x, KINDS, fontsize=7)
        ax.set_title(HEADERS[score][0], fontsize=9)
    axes[0].legend(fontsize=6)
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
    "ablations": Recipe("Ablations", tuple(dict.fromkeys(sweep for _, sweep, _ in ABLATIONS)), ablations),
    "condition_importance": Recipe("Condition importance per CGMA slot", GANS, importance),
    "sanity": Recipe("Sanity check: model parameter randomisation", GANS, sanity),
    "objective": Recipe("What the GAN is trained for: imitate Grad-CAM, be faithful, or both", ("lsft", "objective", "objective_both"), objectives),
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
                        f"Dice@20 % {fmt(gan)} vs {name} {fmt(best)}", verdict(gan, seed_free(best, lsft))))  # fmt: skip
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
                    verdict(0.5, rho)))  # fmt: skip
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
    if "objective" in sweeps:
        lines += [f"| {c} | {m} | {v} |" for c, m, v in objective_verdicts(sweeps) if "unseen_backbone" in c]
    lines += training_lines([run for runs in sweeps.values() for run in runs])
    if all(name in sweeps for name in RECIPES["ablations"].sweeps):
        lines += ["", f"Ablations (`{command} --recipe ablations`):", "", *ablation_table(sweeps)]
    return lines
