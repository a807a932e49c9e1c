"""The sweeps every recipe reads, and the command that runs one."""

from __future__ import annotations

from pathlib import Path

from cgmagan.aggregate import load_runs

VARIANTS = {  # the preset every job of a variant starts from
    "small": ["+experiment=reproduce_small"],  # the embedded default experiment on a CPU
    "paper": ["+experiment=reproduce_paper"],  # six datasets, three backbones, the paper's GAN
}
# the GAN, its teacher and the linear baseline on the same CGMAs: what every job scores. Every other
# method's maps are the same in every job of one classifier seed, so the recipes read them from the
# LSFT job of that seed
REFERENCE_METHODS = "[gradcam,gan,linear_cgma]"
# the ablation table reads those only, so the ablation jobs skip ROAD and condition importance too
ABLATION_EVALUATION = [f"evaluate.methods={REFERENCE_METHODS}", "evaluate.road_images=0", "evaluate.condition_importance=false"]
# the objective jobs: the same methods, with ROAD (the objective recipe compares it)
OBJECTIVE_EVALUATION = [f"evaluate.methods={REFERENCE_METHODS}", "evaluate.condition_importance=false"]
OTHER_SEEDS = "evaluate.methods_other_seeds="
# sweep name -> its overrides besides the variant's and the seeds; the LSFT jobs are every
# ablation's reference, so no setting is run twice
SWEEPS = {
    # null: every method, Score-CAM too, in the job of the classifiers' seed; the other seeds' jobs score
    # the reference methods only (the rest would repeat that job's numbers)
    "lsft": ["conditioning=lsft", "evaluate.methods=null", OTHER_SEEDS + REFERENCE_METHODS],
    "gsft": ["conditioning=gsft", f"evaluate.methods={REFERENCE_METHODS}"],
    "cgma_k": ["cgma.k=1,2,4", *ABLATION_EVALUATION],
    "cgma_order": ["cgma.order=backward", *ABLATION_EVALUATION],
    "cgma_single": ["cgma.cumulative=false", *ABLATION_EVALUATION],
    "exclude_target": ["cgma.k=7", "cgma.exclude_target_layer=false,true", *ABLATION_EVALUATION],  # the same K both ways
    "adversarial": ["gan.lambda_adv=0", *ABLATION_EVALUATION],
    # what G is trained for (the LSFT jobs imitate Grad-CAM): the other methods' maps come from them too.
    # Faithful alone is the main comparison's (its goal is judged over seeds); both, an ablation
    "objective": ["objective=faithful", *OBJECTIVE_EVALUATION],
    "objective_both": ["objective=both", *OBJECTIVE_EVALUATION],
}


MAIN_SWEEPS = ("lsft", "gsft", "objective")  # the main comparison: every seed, always
# the ablations' seeds when --ablation-seeds is not given: the small variant runs them on one seed
# (9 jobs with the both-objectives GAN: 38 min of sweep time in session 17's 55-min run on 2 CPU cores, two sweeps at a time;
# the tables count each row's runs); None: every seed
ABLATION_SEEDS = {"small": "0", "paper": None}


def sweep_seeds(sweep: str, variant: str, seeds: str, ablation_seeds: str | None = None) -> str:
    """The GAN seeds a sweep runs: all of ``seeds`` for the main comparison, else the ablations'."""
    if sweep in MAIN_SWEEPS:
        return seeds
    return ablation_seeds or ABLATION_SEEDS.get(variant) or seeds


def sweep_overrides(sweep: str, seeds: str, classifier_seed: str) -> list[str]:
    """The sweep's overrides; without a job of the classifiers' seed among ``seeds`` (or with a
    classifier per seed), every job scores every method."""
    if classifier_seed in seeds.split(","):
        return SWEEPS[sweep]
    return [o for o in SWEEPS[sweep] if not o.startswith(OTHER_SEEDS)]


def sweep_command(python: str, variant: str, sweep: str, seeds: str, runs_dir: Path, extra: list[str],
                  classifier_seed: str = "0") -> list[str]:  # fmt: skip
    """The sweep over GAN seeds ``seeds``; the classifiers (and data splits) are those of
    ``classifier_seed``, shared by every GAN seed, or each seed's own when it is "each"."""
    shared = [] if classifier_seed == "each" else [f"classifier.seed={classifier_seed}"]
    return [python, "run.py", "-m", f"seed={seeds}", *shared, *VARIANTS[variant], *sweep_overrides(sweep, seeds, classifier_seed),
            f"hydra.sweep.dir={runs_dir / variant / sweep}", *extra]  # fmt: skip


def load_sweeps(runs_dir: Path, variant: str, names) -> dict[str, list[dict]]:
    return {name: load_runs(runs_dir / variant / name) for name in names}
