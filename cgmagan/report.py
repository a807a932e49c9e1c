"""Figures and tables a person would rather look at than read."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cgmagan.methods import METHODS  # noqa: E402
from cgmagan.metrics.scores import SCORES, Score  # noqa: E402
from cgmagan.utils import epochs_text  # noqa: E402


def _stacked(panels: np.ndarray, gap: int, fill: float) -> np.ndarray:
    """[N, H, W(, C)] -> [N·H + (N - 1)·gap, W(, C)]: one picture per column, ``fill`` between the rows."""
    n, h = len(panels), panels.shape[1]
    out = np.full((n * h + (n - 1) * gap, *panels.shape[2:]), fill, dtype=np.float32)
    for i, panel in enumerate(panels):
        out[i * (h + gap) : i * (h + gap) + h] = panel
    return out


def overlay_grid(images: torch.Tensor, columns: dict[str, torch.Tensor | None], title: str = "", row_labels=None,
                 panel_inches: float = 1.6, colorbar: bool = False):  # fmt: skip
    """One row per image: the image, then each map as a jet overlay (presentation only; a map of
    another size is resized to the image's); row labels, when given, in a text column on the left;
    ``colorbar``: the jet scale of the maps (0 to 1) on the right. A column's rows are one picture
    with white gaps, so the figure has a few axes, not one per panel (~10x faster to draw)."""
    n, names = len(images), list(columns)
    h, w = images.shape[-2:]
    gap = max(1, round(0.06 * h))
    offset = 1 if row_labels is not None else 0
    widths = [1.4] * offset + [1] * len(names)
    above = 0.25 + 0.3 * bool(title)  # inches for the column titles and the title
    height = panel_inches * n + above + 0.1
    fig, axes = plt.subplots(1, offset + len(names), figsize=(panel_inches * sum(widths) + 0.2, height), squeeze=False,
                             gridspec_kw={"width_ratios": widths, "wspace": 0.05, "left": 0.1 / (panel_inches * sum(widths) + 0.2),
                                          "right": 0.9 if colorbar else 0.99, "top": 1 - above / height,
                                          "bottom": 0.1 / height})  # fmt: skip
    axes = axes[0]
    picture = _stacked(images.float().permute(0, 2, 3, 1).clamp(0, 1).numpy(), gap, fill=1.0)
    jet = plt.get_cmap("jet").with_extremes(bad=(0, 0, 0, 0))  # the gaps (NaN) stay white
    if row_labels is not None:
        axes[0].axis("off")
        axes[0].set_ylim(len(picture) - 0.5, -0.5)
        for i, label in enumerate(row_labels):
            axes[0].text(1.0, i * (h + gap) + (h - 1) / 2, label, ha="right", va="center", fontsize=7, wrap=True)
    for j, name in enumerate(names):
        ax = axes[offset + j]
        ax.imshow(picture, aspect="auto")
        maps = columns[name]
        if maps is not None:
            maps = maps.float()
            if tuple(maps.shape[-2:]) != (h, w):
                maps = F.interpolate(maps[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            ax.imshow(_stacked(maps.numpy(), gap, fill=np.nan), cmap=jet, alpha=0.5, vmin=0, vmax=1, aspect="auto")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.08 / height, va="top")
    if colorbar:
        bar = fig.add_axes((0.92, 0.15, 0.02, 0.65))
        fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap="jet"), cax=bar).ax.tick_params(labelsize=7)
        bar.set_title("map", fontsize=7)
    return fig


def save_figure(fig, path, dpi: int = 90, **kwargs) -> None:
    fig.savefig(path, dpi=dpi, **kwargs)
    plt.close(fig)


def figure_to_array(fig) -> np.ndarray:
    """RGB pixels of a matplotlib figure (for loggers that take arrays)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _column(score: Score, settings: dict) -> str:
    return score.column.format(area=round(100 * settings["area"]))


def _road(settings: dict) -> str:
    percentiles = settings.get("road_percentiles") or []
    return f"{', '.join(map(str, percentiles))} % of pixels removed, on {settings.get('road_images', 0)} images per combination"


def _condition_table(combo: dict) -> list[str]:
    slots = combo.get("condition_importance")
    if not slots:
        return []
    gan = combo["methods"]["gan"]["dice"]
    lines = [f"Condition importance on {slots['n_images']} images (GAN Dice@0.5 with every slot: {gan:.3f}): "
             "CGMA slot k replaced by zeros, or by another test image's slot k.", "",
             "| slot | mean abs change (zeros) | Dice@0.5 (zeros) | mean abs change (other image) | Dice@0.5 (other image) |",
             "|---:|---:|---:|---:|---:|"]  # fmt: skip
    for zero, other in zip(slots["zeros"], slots["other_image"]):
        lines.append(f"| {zero['slot']} | {zero['mean_abs_change']:.3f} | {zero['dice']:.3f} | "
                     f"{other['mean_abs_change']:.3f} | {other['dice']:.3f} |")  # fmt: skip
    return lines + [""]


def _sanity_table(combo: dict) -> list[str]:
    check = combo.get("sanity_check")
    if not check:
        return []
    steps = len(check["layers"])
    shown = sorted({0, steps // 2 - 1, steps - 1})  # the top layer random, half the layers, all of them
    head = " | ".join(f"top {j + 1} random (down to {check['layers'][j]})" for j in shown)
    lines = [f"Sanity check (cascading model randomisation, {check['n_images']} images): mean Spearman rank correlation "
             f"with the trained model's map; a method passes when it is below {check['pass_below']} with every "
             "layer random.", "", f"| method | {head} | passes |", "|---|" + "---:|" * len(shown) + "---|"]  # fmt: skip
    for method, values in check["spearman"].items():
        cells = " | ".join(f"{values[j]:.3f}" for j in shown)
        lines.append(f"| {method} | {cells} | {'yes' if check['passes'][method] else '**no**'} |")
    return lines + [""]


def sanity_check_figure(results: dict):
    """Per combination, each method's rank correlation with its trained-model map as the
    classifier's layers are randomised from the logits down."""
    combos = [c for c in results["combinations"] if c.get("sanity_check")]
    fig, axes = plt.subplots(1, len(combos), figsize=(3.6 * len(combos), 2.8), squeeze=False, sharey=True)
    for ax, combo in zip(axes[0], combos):
        check = combo["sanity_check"]
        steps = np.arange(1, len(check["layers"]) + 1)
        for method, values in check["spearman"].items():
            ax.plot(steps, values, marker=".", lw=1, label=method)
        ax.axhline(check["pass_below"], color="grey", ls=":", lw=0.8)
        ax.set_title(f"{combo['dataset']} / {combo['backbone']} ({combo['kind']})", fontsize=8)
        ax.set_xlabel("layers randomised, from the logits down", fontsize=7)
    axes[0, 0].set_ylabel("Spearman with trained-model map", fontsize=7)
    axes[0, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle("sanity check: model parameter randomisation", fontsize=9)
    fig.tight_layout()
    return fig


def condition_importance_figure(results: dict):
    """Per combination, the GAN map's mean absolute change when each CGMA slot is replaced."""
    combos = [c for c in results["combinations"] if c.get("condition_importance")]
    fig, axes = plt.subplots(1, len(combos), figsize=(3.2 * len(combos), 2.6), squeeze=False, sharey=True)
    for ax, combo in zip(axes[0], combos):
        slots = combo["condition_importance"]
        k = np.arange(1, len(slots["zeros"]) + 1)
        ax.bar(k - 0.2, [s["mean_abs_change"] for s in slots["zeros"]], 0.4, label="zeros")
        ax.bar(k + 0.2, [s["mean_abs_change"] for s in slots["other_image"]], 0.4, label="other image")
        ax.set_title(f"{combo['dataset']} / {combo['backbone']} ({combo['kind']})", fontsize=8)
        ax.set_xlabel("CGMA slot (early → late layers)", fontsize=7)
        ax.set_xticks(k)
    axes[0, 0].set_ylabel("mean |Δ GAN map|", fontsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"condition importance ({results['conditioning']})", fontsize=9)
    fig.tight_layout()
    return fig


def run_header(results: dict) -> str:
    """What produced these numbers: conditioning, seed, the GAN's training combinations, the command."""
    checkpoint = results["gan_checkpoint"] or "none kept (the GAN's final weights)"
    return (f"Conditioning **{results['conditioning'].upper()}**, seed {results['seed']}; the GAN trained on "
            f"{', '.join(results['train_combinations'])}; GAN checkpoint: `{checkpoint}`.{training_line(results)}\n\n"
            f"Command: `{results['command']}`")  # fmt: skip


def training_line(results: dict) -> str:
    """How the GAN's training ended: steps, the plateau or the epoch cap, the best score beside the
    linear baseline's (empty for a GAN loaded from a checkpoint)."""
    t = results.get("gan_training")
    if not t:
        return ""
    why = ("its validation score stopped improving" if t["stopped_by"] == "plateau"
           else f"it reached the epoch cap (gan.max_epochs {t['max_epochs']}) before any plateau")  # fmt: skip
    where = f"step {t['best_step']}" if t.get("best_step") is not None else f"epoch {t['best_epoch']}"
    best = f"; best {t['monitor']} {t['best_score']:.4f} at {where}" if t.get("best_score") is not None else ""
    linear = t.get("linear_cgma", {}).get(t["monitor"])
    reference = f" (linear_cgma on the same validation data: {linear:.4f})" if linear is not None else ""
    cuts = t.get("lr_cuts") or []
    annealed = f" again after its learning rates were cut at step{'s' if len(cuts) > 1 else ''} {', '.join(map(str, cuts))}" if cuts else ""
    return (f" The GAN trained {t['steps']} steps ({epochs_text(t['epochs'])}) and stopped because {why}{annealed}"
            f"{best}{reference}.")


def markdown_table(results: dict) -> str:
    """One table per combination (a row per method, a column per score present), then a legend
    of the methods and columns."""
    settings = results["settings"]
    lines = []
    for combo in results["combinations"]:
        flag = ""
        if combo["flagged"]:
            why = "classifier near chance" if combo["near_chance"] else "over 5 % all-zero targets"
            flag = f"  **FLAGGED: {why}; these explanations mean little**"
        lines.append(
            f"### {combo['dataset']} / {combo['backbone']} ({combo['kind']}) — classifier test accuracy "
            f"{100 * combo['classifier_accuracy']:.1f} %, all-zero targets {100 * combo['zero_target_share']:.1f} %, "
            f"n = {combo['n_test']}{flag}"
        )
        lines.append("")
        present = [c for c in SCORES if any(c.key in m for m in combo["methods"].values())]
        lines.append("| method | " + " | ".join(_column(c, settings) for c in present) + " |")
        lines.append("|---|" + "---:|" * len(present))
        for method, values in combo["methods"].items():
            cells = [c.fmt.format(values[c.key]) if values.get(c.key) is not None else "–" for c in present]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += _condition_table(combo)
        lines += _sanity_table(combo)
    shown = list(dict.fromkeys(m for combo in results["combinations"] for m in combo["methods"]))
    lines.append("Methods: " + "; ".join(f"**{m}**: {METHODS[m].description}" for m in shown if m in METHODS) + ".")
    lines.append("")
    lines.append("Columns: " + "; ".join(
        f"**{_column(c, settings)}**: {c.description.format(area=round(100 * settings['area']), steps=settings['deletion_steps'], road=_road(settings))}"
        for c in SCORES
    ) + ".")  # fmt: skip
    return "\n".join(lines)
