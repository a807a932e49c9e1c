"""The cost estimate of a reproduction (cgmagan.cost, reproduce --dry-run): jobs expanded as Hydra's
sweeper expands them, classifiers and CGMA caches paid once across the jobs that share them, and
stage costs that are the job's counts times the measured per-image costs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cgmagan import cost
from cgmagan.data.published import FOOD11
from cgmagan.reproduce import main

ROOT = Path(__file__).resolve().parents[1]
PAPER = ["+experiment=reproduce_paper"]
ONE = ["combinations.train=[food11/resnet50]", "combinations.unseen=[]"]


def rates(train=1e-2, forward=1e-3, precompute=4e-3, gan=2e-3, **evaluation) -> cost.Rates:
    """Chosen per-image costs, the same for every backbone (ResNet50's channels and cascade)."""
    net = {"train_step": {"s_per_image": train}, "forward": {"s_per_image": forward},
           "cgma_precompute": {"s_per_image": precompute}, "layers": 16, "cascade": 54, "target_channels": 2048}  # fmt: skip
    per_map = {"scores_per_map": 5e-3, "deletion_insertion_per_map": 4e-2, "road_per_map": 0.5, "condition_importance": 3e-2}
    per_map.update(evaluation)
    return cost.Rates({"device": "test", "device_type": "cpu", "torch": "x", "date": "today", "size": 256,
                       "backbones": {b: net for b in ("resnet50", "vgg16", "mobilenet_v2")},
                       "gan": {"lsft": {"s_per_image": gan}, "gsft": {"s_per_image": gan / 2}},
                       "evaluation": {"explain": {"gradcam": {"s_per_image": 1e-3}, "gan": {"s_per_image": 1e-4}},
                                      **{k: {"s_per_image": v} for k, v in per_map.items()}}})  # fmt: skip


def test_a_sweep_expands_into_one_job_per_combination_of_its_swept_values_in_hydras_order():
    jobs = cost.expand(["seed=0,1", "cgma.k=1,2,4", "evaluate.methods=null"])
    assert [swept for swept, _ in jobs] == [[f"seed={s}", f"cgma.k={k}"] for s in (0, 1) for k in (1, 2, 4)]
    assert all(overrides[-1] == "evaluate.methods=null" and len(overrides) == 3 for _, overrides in jobs)


def test_each_stage_costs_the_jobs_counts_times_the_measured_rates():
    r = rates()
    overrides = [*PAPER, *ONE, "evaluate.methods=[gradcam,gan]", "evaluate.sanity_images=0", "evaluate.road_images=0"]
    (job,) = cost.estimate([("lsft", ["seed=0"], overrides)], r)
    train, val, test = FOOD11["training"], FOOD11["validation"], FOOD11["evaluation"]
    # the paper preset: 30 classifier epochs, 5,000 cached images per split at most, 25 GAN epochs
    assert job.seconds["classifiers"] == pytest.approx(30 * train * 1e-2 + (30 * val + test) * 1e-3)
    assert job.seconds["cgma"] == pytest.approx((5000 + 3430 + 3347) * 4e-3)
    assert job.seconds["gan"] == pytest.approx(25 * (5000 + 3430 / 3) * 2e-3)
    # 1,000 evaluated images, two maps each with their scores; 200 AUC images per map; condition importance
    maps = 1e-3 + 1e-4
    assert job.seconds["evaluation"] == pytest.approx(1000 * (maps + 2 * 5e-3) + 200 * 2 * 4e-2 + 200 * 3e-2)
    assert job.classifiers_trained == 1 and job.classifiers_shared == 0


def test_a_faithfulness_trained_gan_also_pays_its_classifiers_forward_and_backward_on_every_row():
    r = rates()
    overrides = [*PAPER, *ONE, "evaluate.methods=[gan]", "evaluate.sanity_images=0", "evaluate.road_images=0"]
    (imitate, faithful) = cost.estimate([("objective", ["objective=imitate"], [*overrides, "objective=imitate"]),
                                         ("objective", ["objective=faithful"], [*overrides, "objective=faithful"])], r)  # fmt: skip
    assert imitate.seconds["gan"] == pytest.approx(25 * (5000 + 3430 / 3) * 2e-3)
    assert faithful.seconds["gan"] - imitate.seconds["gan"] == pytest.approx(25 * (5000 * 1e-2 + 3430 * 1e-3))


def test_classifiers_and_cgma_caches_are_paid_once_across_the_gan_seeds_that_share_them():
    r = rates()
    jobs = [("lsft", [f"seed={s}"], [f"seed={s}", "classifier.seed=0", *PAPER, *ONE]) for s in (0, 1, 2)]
    first, *later = cost.estimate(jobs, r)
    assert first.classifiers_trained == 1 and first.seconds["classifiers"] > 0 and first.seconds["cgma"] > 0
    assert all(j.classifiers_trained == 0 and j.classifiers_shared == 1 for j in later)
    assert all(j.seconds["classifiers"] == 0 and j.seconds["cgma"] == 0 for j in later)
    assert all(j.seconds["gan"] == pytest.approx(first.seconds["gan"]) for j in later)
    # one classifier per seed when each GAN seed trains its own
    each = cost.estimate([("lsft", [f"seed={s}"], [f"seed={s}", *PAPER, *ONE]) for s in (0, 1)], r)
    assert [j.classifiers_trained for j in each] == [1, 1]


def test_score_cam_costs_one_forward_per_channel_of_the_target_layer_and_the_sanity_check_one_pass_per_layer():
    r = rates()
    base = [*PAPER, *ONE, "evaluate.road_images=0", "evaluate.condition_importance=false"]
    plain = cost.estimate([("x", [], [*base, "evaluate.methods=[gradcam]", "evaluate.sanity_images=0"])], r)[0]
    score = cost.estimate([("x", [], [*base, "evaluate.methods=[gradcam,scorecam]", "evaluate.sanity_images=0"])], r)[0]
    extra = score.seconds["evaluation"] - plain.seconds["evaluation"]
    assert extra == pytest.approx(1000 * (2049 * 1e-3 + 5e-3) + 200 * 4e-2)
    sane = cost.estimate([("x", [], [*base, "evaluate.methods=[gradcam]", "evaluate.sanity_images=16"])], r)[0]
    assert sane.seconds["evaluation"] - plain.seconds["evaluation"] == pytest.approx(16 * 54 * (4e-3 + 1e-3))


def test_the_paper_dry_run_lists_every_job_with_its_cost_and_the_classifiers_shared_across_seeds(tmp_path, monkeypatch, capsys):
    path = tmp_path / "paper_scale.json"
    path.write_text(json.dumps(rates().measured))
    monkeypatch.chdir(ROOT)
    main(["paper", "--dry-run", "--recipe", "faithfulness", "--seeds", "0,1,2", "--rates", str(path), "--",
          "paths.data_dir=/nowhere", "hydra/launcher=slurm"])  # fmt: skip
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("lsft ", "gsft "))]
    assert len(rows) == 6 and "CPU measurements (test" in out
    # 14 combinations: trained by the first job, reused by the five others
    assert "6 jobs; 14 classifiers trained once and reused 70 times" in out
    assert rows[0].split()[2:4] == ["14", "new"] and all(r.split()[2:4] == ["0", "new"] for r in rows[1:])


def test_a_dry_run_without_measurements_says_how_to_make_them(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit, match="benchmarks/paper_scale.py"):
        main(["paper", "--dry-run", "--recipe", "faithfulness", "--rates", str(tmp_path / "none.json")])
