"""``python -m cgmagan.reproduce``: run the sweeps a recipe needs, then write its tables."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import cgmagan.reproduce as package
from cgmagan.report import save_figure
from cgmagan.reproduce.cells import GANS, provenance
from cgmagan.reproduce.recipes import RECIPES, summary
from cgmagan.reproduce.sweeps import MAIN_SWEEPS, VARIANTS, load_sweeps, sweep_command, sweep_overrides, sweep_seeds
from cgmagan.utils import cores, threads_per_job


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
        seeds = sweep_seeds(sweep, args.variant, args.seeds, args.ablation_seeds)
        for swept, overrides in cost.expand([f"seed={seeds}", *sweep_overrides(sweep, seeds, args.classifier_seed)]):
            jobs.append((sweep, swept, [*overrides, *shared, *VARIANTS[args.variant], *args.overrides]))
    rates = cost.Rates.load(args.rates)
    try:
        lines = cost.report(cost.estimate(jobs, rates), rates)
    except cost.NotEstimated as err:
        lines = [f"no cost estimate: {err}"]
    print("\n" + "\n".join(lines), flush=True)


def default_jobs(variant: str, sweeps: int) -> int:
    """Sweeps at once: on a CPU (the small variant) one per core, each job on one thread: the GAN's
    small convolutions scale poorly over threads, so two one-thread jobs on 2 cores train 1.6 times the
    samples a second of one two-thread job (benchmarks/gan_speed.md). The paper variant's jobs go to a launcher."""
    return max(1, min(cores(), sweeps)) if variant == "small" else 1


def parallel_launcher(overrides: list[str]) -> bool:
    """Whether the overrides run each sweep's jobs in parallel here (the joblib launcher)."""
    return any(o.split("=", 1)[0].lstrip("+~") == "hydra/launcher" and o.split("=", 1)[1] in ("parallel", "joblib")
               for o in overrides if "=" in o)  # fmt: skip


def sweeps_at_once(args, sweeps: int) -> int:
    """``--jobs``, or the variant's default; one sweep at a time when the launcher already runs each sweep's
    jobs in parallel (its jobs share the cores as if they were alone: two such sweeps would ask for twice the cores)."""
    if not parallel_launcher(args.overrides):
        return args.jobs or default_jobs(args.variant, sweeps)
    if args.jobs and args.jobs > 1:
        raise SystemExit(f"--jobs {args.jobs} with hydra/launcher=parallel would run {args.jobs} sweeps whose joblib jobs "
                         "each take their share of every core (cores // hydra.launcher.n_jobs threads): drop --jobs (one "
                         "sweep at a time) and set the jobs at once with hydra.launcher.n_jobs")  # fmt: skip
    return 1


def job_count(command: list[str]) -> int:
    """The jobs of a ``run.py -m`` command (its swept values' combinations)."""
    from cgmagan import cost

    return len(cost.expand(command[command.index("-m") + 1 :]))


def faithful(command: list[str]) -> bool:
    """Whether the command's GANs train with the faithfulness objective (objective=faithful or both)."""
    return any(c.startswith("objective=") and c != "objective=imitate" for c in command)


def longest_first(commands: dict[str, list[str]]) -> dict[str, list[str]]:
    """The sweeps in the order to start them, so that no long one ends alone on one core: the main
    comparison before the ablations, and within each the sweeps of faithfulness-trained GANs (a classifier pass
    every step) first, then those with the most jobs."""
    order = sorted(commands, key=lambda name: (name not in MAIN_SWEEPS, not faithful(commands[name]), -job_count(commands[name])))
    return {name: commands[name] for name in order}


def run_sweeps(commands: dict[str, list[str]], jobs: int, logs: Path) -> None:
    """Run the sweeps' commands, ``jobs`` at a time, in the given order; with more than
    one at a time each writes to ``logs/<sweep>.log`` and its jobs share the cores (OMP_NUM_THREADS, unless
    set). A failed sweep lets the others finish, then stops with its log: rerunning skips finished jobs."""
    start = time.monotonic()

    def minutes() -> str:
        return f"{(time.monotonic() - start) / 60:.1f} min"

    env, to_logs = dict(os.environ), jobs > 1
    if to_logs:
        env.setdefault("OMP_NUM_THREADS", str(threads_per_job(jobs)))
        logs.mkdir(parents=True, exist_ok=True)
    waiting, running, failed = list(commands.items()), {}, []
    while waiting or running:
        while waiting and len(running) < jobs:
            name, command = waiting.pop(0)
            log = logs / f"{name}.log"
            print(f"[sweep {len(commands) - len(waiting)} of {len(commands)}, {minutes()} in] "
                  + " ".join(shlex.quote(c) for c in command) + (f" (output: {log})" if to_logs else ""), flush=True)  # fmt: skip
            out = open(log, "w") if to_logs else None  # noqa: SIM115 (closed when the sweep ends)
            running[name] = (subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT if out else None), out, log)
        time.sleep(1)
        for name, (process, out, log) in list(running.items()):
            if process.poll() is None:
                continue
            del running[name]
            if out:
                out.close()
            if process.returncode:
                failed.append(f"{name} (exit {process.returncode}" + (f", output: {log})" if out else ")"))
            print(f"[sweep {name} {'failed' if process.returncode else 'done'}, {minutes()} in]", flush=True)
    print(f"{len(commands)} sweeps in {minutes()}", flush=True)
    if failed:
        raise SystemExit(f"sweeps failed: {', '.join(failed)}. Fix the cause and rerun the same command: finished jobs "
                         "are skipped (skip_finished), caches are reused.")


def main(argv: list[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(prog="python -m cgmagan.reproduce", description=package.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("--recipe", action="append", choices=sorted(RECIPES), help="only these (repeatable); default: all")
    parser.add_argument("--seeds", default="0,1,2", help="GAN seeds of the main comparison (LSFT, GSFT, objectives)")
    parser.add_argument("--ablation-seeds", help="GAN seeds of the ablation sweeps (default: 0 for small, --seeds for paper)")
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
    parser.add_argument("--jobs", type=int, help="sweeps run at once (default: one per CPU core for small, 1 for paper or with hydra/launcher=parallel)")
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
        commands = {}
        for sweep in needed:
            seeds = sweep_seeds(sweep, args.variant, args.seeds, args.ablation_seeds)
            commands[sweep] = sweep_command(sys.executable, args.variant, sweep, seeds, args.runs, args.overrides,
                                            args.classifier_seed)  # fmt: skip
        if args.dry_run:
            for i, command in enumerate(commands.values(), 1):
                print(f"[sweep {i} of {len(commands)}] " + " ".join(shlex.quote(c) for c in command), flush=True)
        else:
            run_sweeps(longest_first(commands), sweeps_at_once(args, len(commands)), args.runs / args.variant)
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
