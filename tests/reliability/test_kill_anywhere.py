"""Promise: a run SIGKILLed at a random point of any stage (classifier training, CGMA precompute,
GAN training, evaluation) is finished by rerunning the same command, with the same results as a
run that was never interrupted, and no file under a final name is ever partial."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]
# two epochs of each training (3 batches each): a kill in the second resumes from the first's checkpoint
SETTINGS = [*TINY, "classifier.max_epochs=2", "gan.max_epochs=2", "evaluate.batch_size=8", "print_config=false"]
# the calls that can be killed, each stage's count under SETTINGS: 3 classifiers x 2 epochs x 3 batches;
# 3 combinations x 3 splits x 3 shards of 16; 2 GAN epochs x 3 batches; 3 combinations x 24 test images / 8
CALLS = {"classifier": 18, "cgma": 27, "gan": 6, "evaluate": 9}


def command(tmp: Path, stage: str | None = None, at: int = 0) -> list[str]:
    overrides = [*SETTINGS, f"paths.cache_dir={tmp / 'cache'}", f"paths.data_dir={tmp / 'data'}", f"hydra.run.dir={tmp / 'run'}"]
    if stage is None:
        return [sys.executable, str(ROOT / "run.py"), *overrides]
    return [sys.executable, "-m", "tests.reliability.killer", stage, str(at), str(tmp / "killed"), *overrides]


def flat(node, prefix: str = "") -> dict[str, float]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in flat(value, f"{prefix}/{key}").items()}
    if isinstance(node, list):
        return {k: v for i, value in enumerate(node) for k, v in flat(value, f"{prefix}/{i}").items()}
    return {prefix: node} if isinstance(node, int | float) and not isinstance(node, bool) else {}


def scores(tmp: Path) -> dict[str, float]:
    """Every number of every combination's results: accuracy, each method's scores, condition importance."""
    results = json.loads((tmp / "run" / "results.json").read_text())
    return flat({f"{c['dataset']}/{c['backbone']}": c for c in results["combinations"]})


def partial_files(tmp: Path) -> list[str]:
    """Files under a final name that do not read back whole."""
    bad = []
    for path in tmp.rglob("*"):
        if not path.is_file() or path.name.startswith(".") or "damaged" in path.name:
            continue
        try:
            if path.suffix == ".ckpt":
                torch.load(path, map_location="cpu", weights_only=False)
            elif path.suffix == ".json":
                json.loads(path.read_text())
        except Exception as err:  # noqa: BLE001
            bad.append(f"{path}: {type(err).__name__}")
    return bad


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    done = subprocess.run(command(tmp), cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return scores(tmp)


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(CALLS))
def test_a_run_killed_anywhere_finishes_on_rerun_with_an_uninterrupted_runs_results(tmp_path, stage, uninterrupted):
    at = random.randint(2, CALLS[stage])  # a new point every time: each must hold
    first = subprocess.run(command(tmp_path, stage, at), cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert first.returncode == -9, f"not killed at {stage} call {at}: {first.stderr[-3000:]}"
    assert (tmp_path / "run" / "INCOMPLETE").is_file() and not (tmp_path / "run" / "results.json").exists()
    assert partial_files(tmp_path) == [], f"killed at {stage} call {at}"

    again = subprocess.run(command(tmp_path, stage, at), cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert again.returncode == 0, f"rerun after a kill at {stage} call {at}: {again.stderr[-3000:]}"
    assert not (tmp_path / "run" / "INCOMPLETE").exists() and partial_files(tmp_path) == []
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"
    resumed = scores(tmp_path)
    assert resumed.keys() == uninterrupted.keys() and len(resumed) > 100
    assert resumed == pytest.approx(uninterrupted, rel=1e-5, abs=1e-6), f"after a kill at {stage} call {at}"
