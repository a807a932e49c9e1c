"""Sweeps as users run them: jobs in parallel (joblib), sharing a W&B group, rerun after an
interruption, aggregated into a table logged to the same group; one GPU per parallel job."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import FEW_METHODS, TINY
from tests.wandb_records import of_kind

ROOT = Path(__file__).resolve().parents[1]


def run_sweep(tmp_path: Path, sweep: Path) -> str:
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
           "conditioning=lsft,gsft", *TINY, *FEW_METHODS, "combinations.unseen=[]", "logger=wandb", "print_config=false",
           f"paths.cache_dir={tmp_path / 'cache'}", f"paths.data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    env.update(HOME=str(tmp_path / "home"), WANDB_DATA_DIR=str(tmp_path / "wandb-data"))  # no key, no ~/.netrc
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout + done.stderr


@pytest.mark.slow  # two joblib jobs, twice (~75 s): make test-all
def test_parallel_sweep_shares_a_wandb_group_skips_finished_jobs_on_rerun_and_aggregates_to_the_group(tmp_path):
    sweep = tmp_path / "sweep"
    run_sweep(tmp_path, sweep)
    results = {job: json.loads((sweep / job / "results.json").read_text()) for job in ("0", "1")}
    assert [results[j]["conditioning"] for j in ("0", "1")] == ["lsft", "gsft"]  # each job its own folder
    groups = set()
    for job in ("0", "1"):
        (run_file,) = (sweep / job / "wandb").glob("offline-run-*/run-*.wandb")
        (run,) = of_kind(run_file, "run")
        groups.add(run.run_group)
        assert results[job]["config"]["logger"]["wandb"]["group"] == run.run_group
    assert groups == {sweep.name}, "the jobs of one sweep share one W&B group, named after the sweep"

    # job 1 interrupted before it wrote its results: the rerun runs job 1 only
    (sweep / "1" / "results.json").unlink()
    finished = (sweep / "0" / "results.json").stat().st_mtime_ns
    run_sweep(tmp_path, sweep)
    assert (sweep / "0" / "results.json").stat().st_mtime_ns == finished
    assert "skipping" in (sweep / "0" / "cli.log").read_text()
    rerun = json.loads((sweep / "1" / "results.json").read_text())
    assert "skipping" not in (sweep / "1" / "cli.log").read_text()
    assert rerun["job_fingerprint"] == results["1"]["job_fingerprint"]

    out = tmp_path / "tables"
    done = subprocess.run([sys.executable, "-m", "cgmagan.aggregate", str(sweep), "--name", "lsft_vs_gsft", "--out", str(out)],
                          cwd=ROOT, env={**os.environ, "HOME": str(tmp_path / "home")},
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "lsft_vs_gsft.md").is_file() and (out / "lsft_vs_gsft.png").is_file()
    (aggregate_file,) = sweep.glob("wandb/offline-run-*/run-*.wandb")
    (run,) = of_kind(aggregate_file, "run")
    assert (run.run_group, run.job_type) == (sweep.name, "aggregate")
    table = next(Path(aggregate_file.parent, "files").glob("media/table/aggregate/lsft_vs_gsft_*.table.json"))
    data = json.loads(table.read_text())
    variants = {row[1] for row in data["data"]}
    assert variants == {"conditioning=lsft", "conditioning=gsft"}


def test_parallel_jobs_each_claim_a_gpu_of_their_own(tmp_path):
    from cgmagan.devices import claim_gpu

    first, lock0 = claim_gpu(3, tmp_path)
    second, lock1 = claim_gpu(3, tmp_path)
    assert (first, second) == (0, 1)
    lock0.release()
    third, lock2 = claim_gpu(3, tmp_path)
    assert third == 0, "a GPU given back is claimed again"
    # every GPU held: the next job waits until one is given back
    _, lock_last = claim_gpu(3, tmp_path)
    claimed = []
    waiter = threading.Thread(target=lambda: claimed.append(claim_gpu(3, tmp_path, poll_s=0.05)))
    waiter.start()
    waiter.join(0.5)
    assert claimed == [], "no GPU free: the job waits"
    lock1.release()
    waiter.join(5)
    assert [index for index, _ in claimed] == [1]
