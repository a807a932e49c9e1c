"""Tables over the runs of a sweep: each variant's scores as mean ± std over its seeds.

    python -m cgmagan.aggregate <sweep dir> --name lsft_vs_gsft [--out experiments/results]

A variant is what a job's Hydra overrides change against the other jobs' (the seed aside); every
``results.json`` under the sweep folder counts (a multirun's job folders, or separate runs copied together). Writes
``<out>/<name>.md`` (one table per combination and the commands that made the runs) and
``<out>/<name>.png`` (the GAN's agreement per variant with its spread over seeds).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from cgmagan.loggers import log_sweep_table
from cgmagan.report import plt, save_figure

SCORES = ("dice", "dice_matched_area", "pearson", "spearman", "average_drop", "win_vs_gradcam", "deletion_auc",
          "insertion_auc", "randomisation_spearman")  # fmt: skip


def load_runs(sweep: Path) -> list[dict]:
    """Every finished run under ``sweep``: its results and its variant, the overrides in which it
    differs from the other runs (the seed aside)."""
    runs = []
    for path in sorted(Path(sweep).rglob("results.json")):
        overrides_file = path.parent / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        kept = {o for o in overrides or [] if not o.split("=")[0].lstrip("+~").endswith("seed")}
        runs.append({"overrides": kept, "results": json.loads(path.read_text()), "path": path})
    if not runs:
        raise FileNotFoundError(f"no results.json under {sweep}: run the sweep first (python run.py -m ...)")
    shared = set.intersection(*(run["overrides"] for run in runs))
    for run in runs:
        run["variant"] = " ".join(sorted(run["overrides"] - shared)) or "(every run)"
    return runs


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """A table cell: mean, std over seeds (ddof 1; 0 for one run) and the number of runs."""
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values)


def aggregate(runs: list[dict], scores: tuple[str, ...] = SCORES) -> dict:
    """``{combination: {variant: {method: {score: (mean, std, n)}}}}``; std over seeds (ddof 1; 0 for one run)."""
    values: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    for run in runs:
        for combo in run["results"]["combinations"]:
            name = f"{combo['dataset']}/{combo['backbone']} ({combo['kind']})"
            for method, row in combo["methods"].items():
                for score in scores:
                    if row.get(score) is not None:
                        values[name][run["variant"]][method][score].append(row[score])
    return {
        name: {variant: {method: {s: mean_std(v) for s, v in by_score.items()}
                         for method, by_score in by_method.items()}
               for variant, by_method in by_variant.items()}
        for name, by_variant in values.items()
    }  # fmt: skip


KINDS = ("seen", "unseen_backbone", "unseen_dataset", "unseen_both", "unseen_pair")
KIND_SCORES = ("dice_matched_area", "pearson", "dice", "randomisation_spearman")


def _over_seeds(runs: list[dict], rows) -> dict:
    """``{variant: {key: (mean, std, n)}}``: ``rows(run)`` yields (key, value) pairs; a run's values
    of one key are averaged first (over its combinations), then mean ± std over the runs (seeds)."""
    values: dict = defaultdict(lambda: defaultdict(list))
    for run in runs:
        mine: dict = defaultdict(list)
        for key, value in rows(run):
            mine[key].append(value)
        for key, found in mine.items():
            values[run["variant"]][key].append(float(np.mean(found)))
    return {variant: {key: mean_std(v) for key, v in by_key.items()} for variant, by_key in values.items()}


def _nested(flat: dict, first_order: dict | None = None) -> dict:
    """``{(a, b, c): cell}`` -> ``{a: {b: {c: cell}}}``, ``a`` in ``first_order``'s order (else as met)."""
    out: dict = {}
    keys = sorted(flat, key=lambda k: first_order.get(k[0], len(first_order))) if first_order else list(flat)
    for key in keys:
        node = out
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = flat[key]
    return out


def by_kind(runs: list[dict], scores: tuple[str, ...] = KIND_SCORES) -> dict:
    """``{variant: {kind: {method: {score: (mean, std, n)}}}}``: each run's scores averaged over its
    combinations of one kind (seen, unseen backbone, ...), then mean ± std over the runs (seeds)."""

    def rows(run):
        for combo in run["results"]["combinations"]:
            for method, row in combo["methods"].items():
                yield from (((combo["kind"], method, s), row[s]) for s in scores if row.get(s) is not None)

    order = {k: i for i, k in enumerate(KINDS)}
    return {variant: _nested(cells, order) for variant, cells in _over_seeds(runs, rows).items()}


def condition_importance(runs: list[dict]) -> dict:
    """``{variant: {replacement: {slot: {"dice": (mean, std, n), "mean_abs_change": ...}}}}``: the
    GAN with CGMA slot k zeroed (or taken from another image), each run's values averaged over its
    combinations, then mean ± std over the runs. Runs without the measurement are left out."""

    def rows(run):
        for combo in run["results"]["combinations"]:
            for replacement, slots in (combo.get("condition_importance") or {}).items():
                if replacement != "n_images":
                    yield from (((replacement, slot["slot"], k), slot[k]) for slot in slots for k in ("dice", "mean_abs_change"))

    # slots in order; a stable sort keeps the replacements in the order the results list them
    return {variant: _nested(dict(sorted(cells.items(), key=lambda kv: kv[0][1])))
            for variant, cells in _over_seeds(runs, rows).items()}  # fmt: skip


def _cell(cell: tuple[float, float, int] | None) -> str:
    return f"{cell[0]:.3f} ± {cell[1]:.3f}" if cell else "–"


def summary_markdown(kinds: dict, slots: dict, methods: tuple[str, ...] = ("gan", "linear_cgma", "gradcam_pp", "last_cgma",
                                                                            "penultimate_gradcam", "mean_train_target")) -> list[str]:  # fmt: skip
    """The seen / unseen table (method scores averaged per kind) and the condition importance table."""
    lines = ["", "## Seen and unseen combinations", "",
             "Each run's scores averaged over its combinations of a kind, then mean ± std over runs. "
             "Agreement with Grad-CAM (Dice@20 %: `dice_matched_area`); `randomisation_spearman` is the sanity "
             "check's (below 0.5 passes).", "",
             "| variant | kind | method | " + " | ".join(KIND_SCORES) + " | n |", "|---|---|---|" + "---:|" * (len(KIND_SCORES) + 1)]  # fmt: skip
    for variant, by_kind_ in kinds.items():
        for kind, by_method in by_kind_.items():
            for method in [m for m in methods if m in by_method]:
                cells = by_method[method]
                n = max(c[2] for c in cells.values())
                lines.append(f"| {variant} | {kind} | {method} | " + " | ".join(_cell(cells.get(s)) for s in KIND_SCORES) + f" | {n} |")
    if slots:
        lines += ["", "## Condition importance", "",
                  "The GAN's Dice@0.5 with Grad-CAM and its mean absolute change when CGMA slot k is replaced by zeros "
                  "or by another image's slot k (mean ± std over runs of the mean over combinations).", "",
                  "| variant | replacement | slot | Dice@0.5 | mean abs change | n |", "|---|---|---:|---:|---:|---:|"]  # fmt: skip
        for variant, by_replacement in slots.items():
            for replacement, by_slot in by_replacement.items():
                for slot, cells in by_slot.items():
                    lines.append(f"| {variant} | {replacement} | {slot} | {_cell(cells['dice'])} | "
                                 f"{_cell(cells['mean_abs_change'])} | {cells['dice'][2]} |")  # fmt: skip
    return lines


def markdown(table: dict, runs: list[dict], title: str) -> str:
    lines = [f"# {title}", "", f"{len(runs)} runs; mean ± std over seeds (n = runs per cell).", "", "Commands:", ""]
    lines += [f"- `{c}`" for c in sorted({run["results"]["command"] for run in runs})]
    lines += summary_markdown(by_kind(runs), condition_importance(runs))
    lines += ["", "## Every combination"]
    flagged: dict = defaultdict(int)
    for run in runs:
        for combo in run["results"]["combinations"]:
            flagged[f"{combo['dataset']}/{combo['backbone']} ({combo['kind']})"] += bool(combo.get("flagged"))
    for name, by_variant in table.items():
        flag = f" — **FLAGGED in {flagged[name]} of {len(runs)} runs** (classifier near chance or all-zero targets)"
        lines += ["", f"## {name}{flag if flagged[name] else ''}", "", "| variant | method | " + " | ".join(SCORES) + " | n |",
                  "|---|---|" + "---:|" * (len(SCORES) + 1)]  # fmt: skip
        for variant, by_method in by_variant.items():
            for method, cells in by_method.items():
                row = [f"{cells[s][0]:.3f} ± {cells[s][1]:.3f}" if s in cells else "–" for s in SCORES]
                n = max(c[2] for c in cells.values())
                lines.append(f"| {variant} | {method} | " + " | ".join(row) + f" | {n} |")
    return "\n".join(lines) + "\n"


def figure(table: dict, scores: tuple[str, ...] = ("dice", "dice_matched_area", "pearson")):
    """Per combination, the GAN's scores per variant, with the spread over seeds as error bars."""
    fig, axes = plt.subplots(1, len(table), figsize=(3.6 * len(table), 2.8), squeeze=False)
    for ax, (name, by_variant) in zip(axes[0], table.items()):
        variants = [v for v in by_variant if "gan" in by_variant[v]]
        x = np.arange(len(variants))
        for i, score in enumerate(scores):
            cells = [by_variant[v]["gan"].get(score, (np.nan, 0.0, 0)) for v in variants]
            ax.bar(x + (i - 1) * 0.27, [c[0] for c in cells], 0.27, yerr=[c[1] for c in cells], label=score, capsize=2)
        ax.set_xticks(x, [v.replace(" ", "\n") for v in variants], fontsize=6)
        ax.set_title(name, fontsize=8)
        ax.set_ylim(0, 1)
    axes[0, 0].legend(fontsize=6)
    axes[0, 0].set_ylabel("GAN vs Grad-CAM", fontsize=7)
    fig.tight_layout()
    return fig


def table_rows(table: dict) -> tuple[list[str], list[list]]:
    """The aggregated table flat: a row per (combination, variant, method), mean and std per score."""
    columns = ["combination", "variant", "method", "n"] + [f"{s}_{stat}" for s in SCORES for stat in ("mean", "std")]
    rows = []
    for name, by_variant in table.items():
        for variant, by_method in by_variant.items():
            for method, cells in by_method.items():
                values = [cells[s][i] if s in cells else None for s in SCORES for i in (0, 1)]
                rows.append([name, variant, method, max(c[2] for c in cells.values()), *values])
    return columns, rows


def sweep_wandb_config(runs: list[dict]) -> dict | None:
    """Where the sweep's jobs logged to W&B (project, entity, group, mode), or None when they did
    not all log to one place."""
    keys = ("project", "entity", "group", "mode")
    wandb_configs = [((run["results"].get("config") or {}).get("logger") or {}).get("wandb") for run in runs]
    places = {tuple(c.get(k) for k in keys) if c else None for c in wandb_configs}
    if len(places) != 1 or None in places:
        return None
    return dict(zip(keys, places.pop()))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="folder holding the runs (a multirun's sweep dir)")
    parser.add_argument("--name", required=True, help="file name of the table and the plot")
    parser.add_argument("--out", type=Path, default=Path("experiments/results"),
                        help="folder for NAME.md and NAME.png (default: experiments/results under the current folder)")
    parser.add_argument("--no-wandb", action="store_true", help="do not log the table to the jobs' W&B group")
    args = parser.parse_args(argv)
    runs = load_runs(args.sweep)
    table = aggregate(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(table, runs, args.name)
    (args.out / f"{args.name}.md").write_text(text)
    save_figure(figure(table), args.out / f"{args.name}.png")
    print(text)
    print(f"written: {(args.out / f'{args.name}.md').resolve()} and {(args.out / f'{args.name}.png').resolve()}")
    if not args.no_wandb and (wandb_cfg := sweep_wandb_config(runs)) is not None:
        columns, rows = table_rows(table)
        folder = log_sweep_table(wandb_cfg, args.sweep, args.name, columns, rows, args.out / f"{args.name}.png")
        print(f"logged to W&B group {wandb_cfg.get('group')!r} ({folder})")
    return table


if __name__ == "__main__":
    main()
