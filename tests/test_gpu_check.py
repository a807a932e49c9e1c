"""`make gpu-check` (benchmarks/gpu_check.py) on tiny sizes on the CPU: every part runs and reports."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_runs_every_part_on_tiny_sizes(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--device", "cpu",
                           "--out", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "gpu_check.md").read_text()
    for stage in ("quickstart: classifiers", "quickstart: CGMA precompute", "quickstart: GAN training",
                  "quickstart: evaluation", "paper-like (smoke): evaluation (every method)", "GAN step, LSFT",
                  "GAN step, GSFT", "CGMA precompute / bare pass"):  # fmt: skip
        assert stage in table, stage
    assert table.count("| cpu |") >= 10


def test_the_gpu_check_says_what_to_do_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode != 0 and "no GPU is visible" in done.stderr and "--smoke --device cpu" in done.stderr
