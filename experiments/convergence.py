"""How far the GAN's stopping criterion is from convergence: a run trained well past it.

    python run.py gan.patience=null gan.max_epochs=12 hydra.run.dir=experiments/runs/convergence
    python experiments/convergence.py experiments/runs/convergence [--stopped <a run with the default stop>]

    # the faithful objective (TAME / L-CAM), against the default cap:
    python run.py objective=faithful gan.patience=null gan.max_epochs=24 hydra.run.dir=experiments/runs/faithful_long
    python run.py objective=faithful hydra.run.dir=experiments/runs/faithful
    python experiments/convergence.py experiments/runs/faithful_long --stopped experiments/runs/faithful --name faithful_convergence

Reads the long run's ``results.json`` (every validation's scores, the linear CGMA baseline's), replays
the default stopping rule on its curve (``gan.patience`` validations without the monitored score
improving by ``gan.min_delta``, as Lightning's EarlyStopping counts them), and writes
``experiments/results/gan_convergence.md`` (the curve, where the rule stops, what training on gained)
and ``.png`` (the run's learning curve); ``--name`` names them otherwise. ``--stopped`` adds the test
scores of a run of the default stop (by the rule, or at its epoch cap) beside the long run's.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCORES = (("dice_matched_area", "Dice@20 %"), ("pearson", "Pearson"), ("deletion_auc", "deletion AUC ↓"),
          ("insertion_auc", "insertion AUC ↑"), ("average_drop", "AD % ↓"))  # fmt: skip


def replay_stop(history: list[dict], score: str, patience: int, min_delta: float) -> int | None:
    """The index of the validation after which the rule stops (lower is better), None if it never does."""
    best, wait = float("inf"), 0
    for i, h in enumerate(history):
        if h[score] < best - min_delta:
            best, wait = h[score], 0
        else:
            wait += 1
            if wait >= patience:
                return i
    return None


def test_rows(results: dict, label: str) -> list[str]:
    rows = []
    for c in results["combinations"]:
        gan, linear, gradcam = (c["methods"].get(m, {}) for m in ("gan", "linear_cgma", "gradcam"))
        cells = [f"{gan.get(s, np.nan):.3f} / {linear.get(s, np.nan):.3f} / {gradcam.get(s, np.nan):.3f}" for s, _ in SCORES]
        rows.append(f"| {label} | {c['dataset']}/{c['backbone']} ({c['kind'].replace('_', ' ')}) | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run trained past the stop (gan.patience=null)")
    parser.add_argument("--stopped", type=Path, help="a run of the same settings with the default stop (rule or cap)")
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--min-delta", type=float, default=0.001)
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results")
    parser.add_argument("--name", default="gan_convergence", help="the names of the table (.md) and curve (.png) written")
    args = parser.parse_args()
    results = json.loads((args.run / "results.json").read_text())
    t = results["gan_training"]
    score, history, reference = t["monitor"], t["history"], t["linear_cgma"]
    stop = replay_stop(history, score, args.patience, args.min_delta)
    best = min(history, key=lambda h: h[score])
    at_stop = min(history[: stop + 1], key=lambda h: h[score]) if stop is not None else best
    lines = [
        "# How far the stopping rule is from convergence", "",
        f"Made by: `{results['command']}`, then `python experiments/convergence.py <its folder>"
        f"{' --stopped <the stopped run>' if args.stopped else ''}{f' --name {args.name}' if args.name != 'gan_convergence' else ''}`.", "",
        f"The GAN trained {t['steps']} steps ({t['epochs']} epochs) without early stopping, validated every "
        f"{' or '.join(str(g) for g in sorted({b['step'] - a['step'] for a, b in zip(history, history[1:])})) or '?'} "
        f"steps. Its best {score} "
        f"{best[score]:.4f} came at step {best['step']}; the linear CGMA baseline "
        f"{f'scores {reference[score]:.4f}' if score in reference else f'is not scored on {score}'} "
        f"on the same validation data ({', '.join(f'{k} {v:.4f}' for k, v in reference.items())}).", "",
    ]  # fmt: skip
    if stop is None:
        lines.append(f"The default rule (patience {args.patience}, min_delta {args.min_delta}) never stops on this curve.")
    else:
        gain = at_stop[score] - best[score]
        lines.append(
            f"The default rule (patience {args.patience} validations, min_delta {args.min_delta}) stops after step "
            f"{history[stop]['step']} and keeps the checkpoint of step {at_stop['step']}: {score} {at_stop[score]:.4f}, "
            f"val/dice {at_stop.get('val/dice', float('nan')):.4f}. Training {t['steps'] - history[stop]['step']} steps "
            f"longer improved {score} by {gain:.4f} more ({100 * gain / at_stop[score]:.1f} % of it) and val/dice by "
            f"{best.get('val/dice', float('nan')) - at_stop.get('val/dice', float('nan')):+.4f}."
        )  # fmt: skip
    stopped = json.loads((args.stopped / "results.json").read_text()) if args.stopped else None
    if stopped:
        ts = stopped["gan_training"]
        how = "by the rule" if ts["stopped_by"] == "plateau" else f"at the epoch cap (gan.max_epochs {ts['max_epochs']})"
        lines += ["", f"The run with the default stop (`{stopped['command']}`) stopped {how} after {ts['steps']} steps; "
                      f"its best {ts['monitor']} {ts['best_score']:.4f} came at step {ts['best_step']}."]  # fmt: skip
    lines += ["", f"![learning curve]({args.name}.png)", "", "| step | epoch | " + " | ".join(k for k in history[0] if k.startswith("val/")) + " |",
              "|---:|---:|" + "---:|" * sum(k.startswith("val/") for k in history[0])]  # fmt: skip
    for i, h in enumerate(history):
        mark = " (rule stops)" if i == stop else ""
        lines.append(f"| {h['step']}{mark} | {h['epoch']} | " + " | ".join(f"{v:.4f}" for k, v in h.items() if k.startswith("val/")) + " |")
    lines += ["", "Test scores per combination, GAN / linear_cgma / Grad-CAM (agreement scores are with Grad-CAM, so its own are 1):", "",
              "| run | combination | " + " | ".join(h for _, h in SCORES) + " |", "|---|---|" + "---:|" * len(SCORES)]  # fmt: skip
    if stopped:
        lines += test_rows(stopped, f"default stop ({ts['steps']} steps, {how})")
    lines += test_rows(results, f"trained on ({t['steps']} steps)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    shutil.copyfile(args.run / "figures" / "learning_curve.png", args.out / f"{args.name}.png")
    print(args.out / f"{args.name}.md")


if __name__ == "__main__":
    main()
