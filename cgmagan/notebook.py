"""What ``notebooks/quickstart.ipynb`` reads from a finished run folder: which run, its settings,
the scores as markdown tables, the GAN's training curves from the CSV logger and the GAN beside
the best no-training baseline. Plain data and markdown only: the notebook draws the figures, and
this module leaves matplotlib's backend alone (``cgmagan.report`` sets Agg, which would keep
figures from showing inline)."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from cgmagan.methods import NO_TRAINING_BASELINES
from cgmagan.metrics.scores import SCORES

RUN_DIR_ENV = "CGMAGAN_RUN_DIR"
RUNS = Path("outputs/cgmagan/runs")
MAIN_SCORES = ("dice", "dice_matched_area", "pearson", "spearman", "mae", "average_drop", "win_vs_gradcam",
               "deletion_auc", "insertion_auc", "pointing_game")  # fmt: skip
COMPARED = ("dice", "pearson")  # the GAN against the best baseline
_SCORE = {s.key: s for s in SCORES}


def find_run(start: Path | str | None = None) -> Path:
    """The run folder to show: ``$CGMAGAN_RUN_DIR`` when set, otherwise the newest
    ``outputs/cgmagan/runs/<time>/`` holding a ``results.json``, looked for in ``start`` (the
    working directory) and the folders above it (Jupyter starts a notebook in ``notebooks/``)."""
    if value := os.environ.get(RUN_DIR_ENV):
        run = Path(value).expanduser()
        if not (run / "results.json").is_file():
            raise FileNotFoundError(f"{RUN_DIR_ENV}={value} holds no results.json: point it at a finished run "
                                    f"folder ({RUNS}/<time>/, or a sweep job's folder)")  # fmt: skip
        return run.resolve()
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        finished = sorted(path.parent for path in (folder / RUNS).glob("*/results.json"))
        if finished:
            return finished[-1]  # Hydra names run folders by their start time
    raise FileNotFoundError(f"no finished run: no {RUNS}/<time>/results.json in {start} or any folder above it. "
                            "Make one in the project folder with `make quickstart` (the default experiment, "
                            "shorter) or `make run`, or set CGMAGAN_RUN_DIR to a run folder.")  # fmt: skip


def load_results(run: Path | str) -> dict:
    return json.loads((Path(run) / "results.json").read_text())


def combination_name(combo: dict) -> str:
    return f"{combo['dataset']}/{combo['backbone']} ({combo['kind'].replace('_', ' ')})"


def _fmt(key: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return _SCORE[key].fmt.format(value) if key in _SCORE else f"{value:.3f}"


def _column(key: str, results: dict) -> str:
    return _SCORE[key].column.format(area=round(100 * results["settings"]["area"]))


def settings_markdown(run: Path | str, results: dict) -> str:
    """Conditioning, seed, the main config values, the combinations and the command."""
    cfg = results.get("config", {})
    cgma, gan, clf, ev = (cfg.get(k, {}) for k in ("cgma", "gan", "classifier", "evaluate"))
    lines = [
        f"- run folder: `{run}`",
        f"- conditioning **{results['conditioning'].upper()}**, seed {results['seed']}, "
        f"K = {cgma.get('k')} CGMAs accumulated {cgma.get('order')}",
        f"- classifiers: {clf.get('max_epochs')} epochs; GAN: {gan.get('max_epochs')} epochs on "
        f"{', '.join(results['train_combinations'])}; up to {ev.get('max_images')} test images per combination",
        f"- GAN checkpoint: `{results['gan_checkpoint'] or 'none kept (the final weights were scored)'}`",
        f"- command: `{results['command']}`",
        "",
        "| combination | GAN trained on it | classifier test accuracy | all-zero targets | test images |",
        "|---|---|---:|---:|---:|",
    ]
    for combo in results["combinations"]:
        flag = " **flagged**" if combo.get("flagged") else ""
        lines.append(f"| {combination_name(combo)}{flag} | {'yes' if combo['seen'] else 'no'} | "
                     f"{100 * combo['classifier_accuracy']:.1f} % | {100 * combo['zero_target_share']:.1f} % | "
                     f"{combo['n_test']} |")  # fmt: skip
    return "\n".join(lines)


def results_markdown(results: dict, scores: tuple[str, ...] = MAIN_SCORES) -> str:
    """Per combination, a row per method with its main scores (results.md has every column)."""
    lines = []
    for combo in results["combinations"]:
        present = [k for k in scores if any(m.get(k) is not None for m in combo["methods"].values())]
        lines += [f"**{combination_name(combo)}**, classifier test accuracy "
                  f"{100 * combo['classifier_accuracy']:.1f} %, n = {combo['n_test']}", "",
                  "| method | " + " | ".join(_column(k, results) for k in present) + " |",
                  "|---|" + "---:|" * len(present)]  # fmt: skip
        for method, row in combo["methods"].items():
            name = f"**{method}**" if method == "gan" else method
            lines.append(f"| {name} | " + " | ".join(_fmt(k, row.get(k)) for k in present) + " |")
        lines.append("")
    return "\n".join(lines)


def gan_metrics_csv(run: Path | str) -> Path | None:
    """The CSV logger's file of the GAN's training: the newest ``gan/version_*/metrics.csv``."""
    found = [p for p in Path(run).glob("gan/version_*/metrics.csv") if p.parent.name[8:].isdigit()]
    return max(found, key=lambda p: int(p.parent.name[8:])) if found else None


def training_curves(path: Path | str) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """``{"train": {"train/l1": (steps, values), ...}, "val": {...}}`` from a Lightning CSV log;
    the evaluation's ``test/`` scores (logged there too) are left out."""
    curves: dict = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for name, value in row.items():
                if name in ("epoch", "step") or name.startswith("test/") or value in ("", None):
                    continue
                group = name.split("/")[0] if "/" in name else "other"
                steps, values = curves.setdefault(group, {}).setdefault(name, ([], []))
                steps.append(int(row["step"]))
                values.append(float(value))
    return curves


def gan_vs_baselines(results: dict) -> list[dict]:
    """Per combination with a GAN row: the GAN, the no-training baseline with the best Dice@0.5
    (Pearson breaks ties) and Grad-CAM, each as ``{score: value}`` for :data:`COMPARED`."""
    rows = []
    for combo in results["combinations"]:
        methods = combo["methods"]
        if "gan" not in methods:
            continue
        baselines = [m for m in NO_TRAINING_BASELINES if m in methods]
        best = max(baselines, key=lambda m: tuple(_number(methods[m].get(k)) for k in COMPARED), default=None)
        rows.append({"combination": combination_name(combo), "baseline": best, "gan": _scores(methods, "gan"),
                     "best_baseline": _scores(methods, best), "gradcam": _scores(methods, "gradcam")})  # fmt: skip
    return rows


def _scores(methods: dict, name: str | None) -> dict | None:
    return {k: methods[name].get(k) for k in COMPARED} if name in methods else None


def _number(value) -> float:
    return -math.inf if value is None or math.isnan(value) else value


def comparison_markdown(rows: list[dict], results: dict) -> str:
    """The GAN's Dice@0.5 and Pearson beside the best no-training baseline's, per combination."""
    head = [f"{who} {_column(k, results)}" for k in COMPARED for who in ("GAN", "baseline")]
    lines = ["| combination | best no-training baseline | " + " | ".join(head) + " | GAN ahead on |",
             "|---|---|" + "---:|" * len(head) + "---|"]  # fmt: skip
    for row in rows:
        gan, base = row["gan"], row["best_baseline"] or {}
        cells = [_fmt(k, v) for k in COMPARED for v in (gan.get(k), base.get(k))]
        ahead = [_column(k, results) for k in COMPARED if _number(gan.get(k)) > _number(base.get(k))]
        lines.append(f"| {row['combination']} | {row['baseline'] or '–'} | " + " | ".join(cells) +
                     f" | {', '.join(ahead) or 'neither'} |")  # fmt: skip
    return "\n".join(lines)
