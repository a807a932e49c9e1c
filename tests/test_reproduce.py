"""The recipes' tables from sweep folders: which runs each row reads, what is averaged, what is left
out, and the claims' verdicts, on runs whose numbers the test chooses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cgmagan.reproduce import RECIPES, SWEEPS, main

KIND_OFFSET = {"seen": 0.1, "unseen_backbone": 0.0, "unseen_dataset": -0.05, "unseen_both": -0.1}
COMBOS = [("shapes", "small_vgg", "seen"), ("shapes", "small_mobilenet", "unseen_backbone"),
          ("digits", "small_vgg", "unseen_dataset"), ("digits", "small_mobilenet", "unseen_both")]  # fmt: skip
# each job of each sweep: (config changes, the GAN's Dice@20 % before the kind's offset and the seed's 0.01 s)
JOBS = {
    "lsft": [({"conditioning": "lsft"}, 0.8)],
    "gsft": [({"conditioning": "gsft"}, 0.6)],
    "cgma_k": [({"k": 1}, 0.5), ({"k": 2}, 0.6), ({"k": 4}, 0.7)],
    "cgma_order": [({"order": "backward"}, 0.75)],
    "cgma_single": [({"cumulative": False}, 0.7)],
    "exclude_target": [({"k": 7, "exclude_target_layer": False}, 0.78), ({"k": 7, "exclude_target_layer": True}, 0.82)],
    "adversarial": [({"lambda_adv": 0.0}, 0.79)],
    "objective": [({"lambda_l1": 0}, 0.5)],  # faithful
    "objective_both": [({"lambda_l1": 100}, 0.78)],
}
REFERENCE = ("gradcam", "gan", "linear_cgma")  # what every LSFT job scores; the other methods, seed 0's
FAITHFUL_DELETION = 0.2  # the faithful GAN's deletion AUC; every other GAN's 0.35, Grad-CAM's 0.3
SEEDS = (0, 1)


def methods(gan_dice: float) -> dict:
    score = {"gradcam": (1.0, 10.0, 1.0), "gradcam_pp": (0.95, 9.5, 0.95), "linear_cgma": (0.75, 9.0, 0.8),
             "last_cgma": (0.7, 20.0, 0.6), "gan": (gan_dice, 8.0, 0.6)}  # fmt: skip
    return {m: {"dice_matched_area": d, "average_drop": ad, "dice": dice, "win_vs_gradcam": 60.0 if m == "gan" else 50.0,
                "pearson": 0.9, "randomisation_spearman": 0.7 if m == "gan" else 0.1,
                "deletion_auc": 0.35 if m == "gan" else 0.3} for m, (d, ad, dice) in score.items()}  # fmt: skip


def combination(dataset: str, backbone: str, kind: str, gan_dice: float, flagged: bool = False) -> dict:
    importance = {"n_images": 4, "zeros": [{"slot": k, "dice": 0.8, "mean_abs_change": c} for k, c in ((1, 0.3), (2, 0.05), (3, 0.3))]}
    cascade = {"gan": [0.9, 0.8, 0.7], "gradcam": [0.5, 0.2, 0.1], "last_cgma": [0.6, 0.5, 0.45],
               "gradcam_pp": [0.5, 0.3, 0.2], "linear_cgma": [0.4, 0.1, 0.0]}  # fmt: skip
    return {"dataset": dataset, "backbone": backbone, "kind": kind, "flagged": flagged, "classifier_accuracy": 0.5 if flagged else 0.99,
            "n_test": 100, "n_auc": 8, "n_road": 4, "methods": methods(gan_dice), "condition_importance": importance,
            "sanity_check": {"spearman": cascade, "pass_below": 0.5, "n_images": 4}}  # fmt: skip


def write_sweeps(runs: Path) -> None:
    for sweep, jobs in JOBS.items():
        for j, (changes, base) in enumerate(jobs):
            for seed in SEEDS:
                cgma = {"k": 8, "order": "forward", "exclude_target_layer": False, "cumulative": True}
                cgma.update({k: v for k, v in changes.items() if k in cgma})
                config = {"conditioning": {"name": changes.get("conditioning", "lsft")}, "cgma": cgma,
                          "gan": {"lambda_adv": changes.get("lambda_adv", 1.0), "module": {"lambda_l1": changes.get("lambda_l1", 100)}}}  # fmt: skip
                combos = [combination(d, b, k, base + KIND_OFFSET[k] + 0.01 * seed) for d, b, k in COMBOS]
                for c in combos if changes.get("lambda_l1") == 0 else ():
                    c["methods"]["gan"]["deletion_auc"] = FAITHFUL_DELETION + 0.01 * seed
                combos.append(combination("textures", "small_vgg", "seen", 0.0, flagged=True))  # left out of every mean
                if sweep == "lsft" and seed != 0:  # as evaluate.methods_other_seeds: the other methods in seed 0's job only
                    config["evaluate"] = {"methods_other_seeds": list(REFERENCE)}
                    for c in combos:
                        c["methods"] = {m: v for m, v in c["methods"].items() if m in REFERENCE}
                        c["sanity_check"]["spearman"] = {m: v for m, v in c["sanity_check"]["spearman"].items() if m in REFERENCE}
                capped = sweep == "objective"  # the faithful GANs end on the epoch cap, every other by the plateau rule
                steps = 1500 if capped else 900 + 100 * j + 25 * seed
                training = {"steps": steps, "stopped_by": "max_epochs" if capped else "plateau", "best_step": steps - 25}
                results = {"command": f"python run.py -m {sweep}", "seed": seed, "classifier_seed": 0, "config": config,
                           "combinations": combos, "gan_training": training,
                           "settings": {"deletion_steps": 20, "road_percentiles": [10, 50, 90]}}  # fmt: skip
                folder = runs / "small" / sweep / f"{j}-{seed}"
                folder.mkdir(parents=True)
                (folder / "results.json").write_text(json.dumps(results))


def spread(*values: float) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce")
    write_sweeps(root / "runs")
    readme = root / "README.md"
    readme.write_text("# title\n\nbefore\n<!-- reproduce-small: start -->\nold numbers\n<!-- reproduce-small: end -->\nafter\n")
    main(["small", "--tables-only", "--runs", str(root / "runs"), "--out", str(root / "out"), "--readme", str(readme)])
    texts = {name: (root / "out" / "small" / f"{name}.md").read_text() for name in [*RECIPES, "summary"]}
    return root, texts


def test_every_recipe_writes_its_table_and_plot_with_the_command_that_regenerates_it(written):
    root, texts = written
    for name in RECIPES:
        assert f"Regenerate: `python -m cgmagan.reproduce small --recipe {name}`" in texts[name]
        assert (root / "out" / "small" / f"{name}.png").stat().st_size > 10_000
    assert "- `python run.py -m gsft`" in texts["sanity"] and "- `python run.py -m cgma_k`" in texts["ablations"]
    assert "Left out as flagged" in texts["unseen"] and "textures/small_vgg" in texts["unseen"]
    assert "GAN seeds 0, 1 over the classifiers and data splits of classifier.seed 0" in texts["faithfulness"]
    assert "The jobs of GAN seeds 1 scored only gradcam, gan, linear_cgma (evaluate.methods_other_seeds)" in texts["faithfulness"]


def test_ablation_rows_read_their_own_runs_and_leave_flagged_combinations_out(written):
    text = written[1]["ablations"]
    # K = 1: Dice@20 % 0.5 + kind offset + 0.01 seed; the flagged seen combination (0.0) is not averaged in
    k1 = next(line for line in text.splitlines() if line.startswith("| K = 1 "))
    cells = [c.strip() for c in k1.split("|")[2:-1]]
    assert cells[0] == spread(0.6, 0.61) and cells[3] == spread(0.4, 0.41)
    assert cells[4] == "-0.300"  # unseen mean against the default (LSFT, 0.8)
    assert cells[-1] == "2"  # runs
    excluded = next(line for line in text.splitlines() if line.startswith("| K = 7, target layer excluded "))
    assert excluded.split("|")[2].strip() == spread(0.92, 0.93) and "| +0.020 |" in excluded
    assert "default (LSFT, K = 8, forward order, CGMAs, target layer in, adversarial weight 1.0)" in text


def test_faithfulness_and_unseen_tables_put_both_gans_beside_every_method(written):
    texts = written[1]
    seen = texts["faithfulness"].split("### Seen combinations")[1].split("###")[0]
    assert "| GAN (LSFT) | 8.00 ± 0.00 |" in seen and "| last_cgma | 20.00 |" in seen  # seed 0's job alone: its value, no spread
    assert "20 steps" in texts["faithfulness"] and "[10, 50, 90]" in texts["faithfulness"]
    dice20 = texts["unseen"].split("### Dice@20 %")[1].split("###")[0]
    both = next(line for line in dice20.splitlines() if line.startswith("| unseen_both "))
    assert both.startswith(f"| unseen_both | {spread(0.7, 0.71)} | {spread(0.5, 0.51)} |")
    # last_cgma from seed 0's job alone: exact (every job of classifier seed 0 has its maps), so the GAN's spread judges
    assert "last_cgma 0.700 | within the seed spread |" in both  # 0.705 ± 0.007 vs 0.700
    backbone = next(line for line in dice20.splitlines() if line.startswith("| unseen_backbone "))
    assert backbone.endswith("last_cgma 0.700 | yes |")  # 0.805


def test_the_objective_recipe_reads_each_objectives_runs_and_judges_the_faithful_gan_against_grad_cam(written):
    text = written[1]["objective"]
    backbone = text.split("### unseen_backbone")[1].split("###")[0]
    rows = {line.split(" | ")[0][2:]: [c.strip() for c in line.split("|")[2:-1]] for line in backbone.splitlines() if line.startswith("| ")}
    # columns: AD, AD@20 %, deletion, insertion, ROAD MoRF, ROAD LeRF, Dice@20 %, MPRT, runs
    assert rows["GAN, imitate Grad-CAM"][2] == "0.350 ± 0.000" and rows["GAN, imitate Grad-CAM"][6] == spread(0.8, 0.81)
    assert rows["GAN, faithful"][2] == spread(0.2, 0.21) and rows["GAN, faithful"][6] == spread(0.5, 0.51)
    assert rows["GAN, both"][6] == spread(0.78, 0.79) and rows["gradcam"][2] == "0.300 ± 0.000"
    assert rows["GAN, faithful"][-1] == "2" and "| insertion AUC ↑ |" in backbone
    assert rows["gradcam"][-1] == "2" and rows["gradcam_pp"][-1] == "1"  # the runs that scored it
    assert "| The faithful GAN beats Grad-CAM on unseen_backbone, deletion AUC (ours) | 0.205 ± 0.007 vs 0.300 ± 0.000 | **yes** |" in text
    assert "| The faithful GAN beats Grad-CAM on unseen_backbone, deletion AUC (ours) |" in written[1]["summary"]


def test_tables_say_how_each_gan_stopped_and_name_the_runs_at_the_epoch_cap(written):
    _, texts = written
    rule = "runs stopped by the plateau rule (gan.patience validations without the monitored score improving by gan.min_delta)"
    capped = ("at the epoch cap (gan.max_epochs): objective seed 0 (1,500 steps; best at 1,475), "
              "objective seed 1 (1,500 steps; best at 1,475).")  # fmt: skip
    # every sweep's runs: 12 jobs x 2 seeds, the plateau ones after 900 (first job, seed 0) to 1,125 steps (cgma_k's third, seed 1)
    assert f"GAN training: 22 of 24 {rule} after 900-1,125 steps; {capped}" in texts["summary"]
    assert f"GAN training: 4 of 6 {rule} after 900-925 steps; {capped}" in texts["objective"]  # LSFT, faithful, both
    ablations = next(line for line in texts["ablations"].splitlines() if line.startswith("GAN training"))
    assert rule in ablations and "epoch cap" not in ablations


def test_a_verdict_needs_a_spread_over_seeds_on_both_sides():
    from cgmagan.reproduce.cells import seed_free, verdict

    assert verdict((0.30, 0.01, 3), (0.20, 0.02, 3)) == "**yes**" and verdict((0.30, 0.0, 1), (0.20, 0.0, 3)).startswith("one run")
    assert verdict(0.5, (0.24, 0.05, 3)) == "**yes**" and verdict((0.24, 0.05, 3), 0.5) == "**no**"
    assert verdict((0.30, 0.05, 3), 0.28) == "within the seed spread"
    shared = [{"results": {"classifier_seed": 0}}] * 2
    own = [{"results": {"classifier_seed": s}} for s in (0, 1)]
    assert seed_free((0.2, 0.0, 1), shared) == 0.2 and verdict((0.30, 0.01, 3), seed_free((0.2, 0.0, 1), shared)) == "**yes**"
    assert seed_free((0.2, 0.05, 2), own) == (0.2, 0.05, 2) and seed_free(None, shared) is None


def test_sanity_verdicts_and_condition_importance(written):
    texts = written[1]
    gan = next(line for line in texts["sanity"].splitlines() if line.startswith("| GAN (LSFT) "))
    assert "| 0.900 ± 0.000 | 0.800 ± 0.000 | 0.700 ± 0.000 | 0 of 8 | fails |" in gan  # 4 combinations x 2 seeds
    assert next(line for line in texts["sanity"].splitlines() if line.startswith("| gradcam ")).endswith("| 8 of 8 | passes |")
    assert next(line for line in texts["sanity"].splitlines() if line.startswith("| gradcam_pp ")).endswith("| 4 of 4 | passes |")
    assert "| 2 | 0.800 ± 0.000 | 0.050 ± 0.000 |" in texts["condition_importance"].split("### LSFT")[1]


def test_summary_states_which_claims_held_and_fills_the_readme_block(written):
    root, texts = written
    claims = {line.split(" | ")[0][2:]: line.rsplit("|", 2)[1].strip() for line in texts["summary"].splitlines()
              if line.startswith("| ") and line.endswith(("**yes** |", "**no** |", "spread |"))}  # fmt: skip
    assert claims["LSFT beats GSFT on unseen combinations (paper)"] == "**yes**"
    assert claims["LSFT's Average Drop is below Grad-CAM's (paper: 9.95 %)"] == "**yes**"  # 8 vs 10
    assert claims["Dice with Grad-CAM on unseen dataset and backbone at least the paper's 0.6588"] == "**no**"  # 0.6
    assert claims["LSFT beats the linear baseline on unseen_both (ours)"] == "**no**"  # 0.705 vs 0.75
    assert claims["LSFT beats every no-training baseline on unseen_backbone (ours)"] == "**yes**"  # 0.805 vs 0.7
    assert claims["LSFT beats every no-training baseline on unseen_both (ours)"] == "within the seed spread"  # 0.705 ± 0.007
    assert claims["The earliest and the final CGMA matter equally (paper; within a factor 2)"] == "**yes**"  # 0.3 and 0.3
    assert claims["LSFT's map depends on the model (MPRT ρ with every layer random below 0.5)"] == "**no**"
    assert "Ablations (`python -m cgmagan.reproduce small --recipe ablations`)" in texts["summary"]
    assert "| K = 7, target layer excluded |" in texts["summary"]
    readme = (root / "README.md").read_text()
    assert readme.startswith("# title\n\nbefore\n<!-- reproduce-small: start -->\nRegenerate everything here")
    assert "old numbers" not in readme and readme.endswith("<!-- reproduce-small: end -->\nafter\n")


def test_a_dry_run_lists_only_the_sweeps_the_chosen_recipes_read(capsys):
    assert main(["small", "--dry-run", "--recipe", "sanity", "--", "hydra/launcher=parallel"]) == {}
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[sweep")]
    assert "no cost estimate: shapes has no published image counts" in out  # the embedded data: nothing to estimate from
    assert len(lines) == 2 and lines[0].startswith("[sweep 1 of 2] ") and lines[0].endswith(
        "run.py -m seed=0,1,2 classifier.seed=0 +experiment=reproduce_small conditioning=lsft evaluate.methods=null "
        "'evaluate.methods_other_seeds=[gradcam,gan,linear_cgma]' hydra.sweep.dir=experiments/runs/small/lsft hydra/launcher=parallel")  # fmt: skip
    main(["small", "--dry-run", "--recipe", "sanity", "--seeds", "1,2"])  # no job of classifier seed 0: each scores every method
    assert "evaluate.methods_other_seeds" not in capsys.readouterr().out
    main(["small", "--dry-run", "--recipe", "ablations", "--recipe", "objective"])
    commands = {line.split("hydra.sweep.dir=experiments/runs/small/")[1].split()[0]: line
                for line in capsys.readouterr().out.splitlines() if line.startswith("[sweep")}  # fmt: skip
    # the main comparison on every seed, the ablations on one in the small variant
    assert all(" -m seed=0,1,2 " in commands[s] for s in ("lsft", "gsft", "objective"))
    assert all(" -m seed=0 " in commands[s] for s in ("cgma_k", "cgma_order", "cgma_single", "exclude_target", "adversarial",
                                                     "objective_both"))  # fmt: skip
    main(["paper", "--dry-run", "--seeds", "0"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[sweep")]
    assert [line.split("hydra.sweep.dir=experiments/runs/paper/")[1] for line in lines] == list(SWEEPS)
    assert all("+experiment=reproduce_paper" in line and "seed=0 " in line for line in lines)


def test_sweeps_run_two_at_a_time_on_a_core_each_and_a_failed_one_lets_the_others_finish(tmp_path, monkeypatch):
    """run_sweeps with commands that record when they ran and their thread setting: at most two run at
    once, each with OMP_NUM_THREADS = cores // 2 and its output in <sweep>.log; a failing sweep does not stop the
    others, and the run then ends with an error naming its log."""
    import os
    import sys

    from cgmagan.reproduce.cli import run_sweeps

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    record = "import os, sys, time; t = time.time(); time.sleep(1.5); print(os.environ['OMP_NUM_THREADS'], t, time.time()); sys.exit({})"
    commands = {name: [sys.executable, "-c", record.format(code)] for name, code in (("a", 0), ("b", 3), ("c", 0))}
    with pytest.raises(SystemExit, match=r"sweeps failed: b \(exit 3, output: .*b\.log\)"):
        run_sweeps(commands, 2, tmp_path)
    runs = {name: (tmp_path / f"{name}.log").read_text().split() for name in commands}
    threads = str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert all(r[0] == threads for r in runs.values())  # c ran too, after b had failed
    spans = sorted((float(r[1]), float(r[2])) for r in runs.values())
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]  # the first two overlapped
    assert spans[2][0] >= min(spans[0][1], spans[1][1])  # the third waited for a free slot


def test_sweeps_start_longest_first_main_comparison_first_faithful_gans_first_within_each_then_by_jobs():
    from cgmagan.reproduce.cli import longest_first
    from cgmagan.reproduce.sweeps import sweep_command

    commands = {name: sweep_command("python", "small", name, "0,1,2" if name in ("lsft", "objective") else "0", Path("runs"), [])
                for name in ("cgma_order", "exclude_target", "objective_both", "lsft", "cgma_k", "objective")}  # fmt: skip
    assert list(longest_first(commands)) == ["objective", "lsft", "objective_both", "cgma_k", "exclude_target", "cgma_order"]


def test_sweeps_run_one_at_a_time_when_the_launcher_runs_their_jobs_in_parallel(tmp_path):
    from argparse import Namespace

    from cgmagan.reproduce.cli import sweeps_at_once
    from cgmagan.utils import cores

    def args(jobs, *overrides):
        return Namespace(jobs=jobs, variant="small", overrides=list(overrides))

    assert sweeps_at_once(args(None), 9) == min(cores(), 9) and sweeps_at_once(args(3), 9) == 3
    assert sweeps_at_once(args(None, "hydra/launcher=slurm"), 9) == min(cores(), 9)  # a cluster's jobs use its nodes
    assert sweeps_at_once(args(None, "hydra/launcher=parallel", "hydra.launcher.n_jobs=2"), 9) == 1
    assert sweeps_at_once(args(1, "hydra/launcher=joblib"), 9) == 1
    # refused before any sweep starts: nothing is written under --runs
    with pytest.raises(SystemExit, match=r"--jobs 2 with hydra/launcher=parallel .* drop --jobs"):
        main(["small", "--jobs", "2", "--runs", str(tmp_path / "runs"), "--", "hydra/launcher=parallel"])
    assert not (tmp_path / "runs").exists()
