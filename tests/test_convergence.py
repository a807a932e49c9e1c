"""experiments/convergence.py: the default stopping rule replayed on a run trained past it, and the
run of the default stop (by the rule or at the epoch cap) beside it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def convergence():
    spec = importlib.util.spec_from_file_location("convergence", ROOT / "experiments" / "convergence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_rule_stops_after_patience_validations_without_an_improvement_of_min_delta(convergence):
    history = [{"step": s, "val/x": v} for s, v in [(50, 0.5), (100, 0.4), (150, 0.3995), (200, 0.38), (250, 0.3799),
                                                    (300, 0.3798), (350, 0.3797), (400, 0.2)]]  # fmt: skip
    # 0.3995 is not 0.001 below 0.4 (wait 1), 0.38 is (best); then three validations within min_delta: stop at index 6
    assert convergence.replay_stop(history, "val/x", patience=3, min_delta=0.001) == 6
    assert convergence.replay_stop(history, "val/x", patience=3, min_delta=0.0) is None  # each one a little lower


def write_run(folder: Path, command: str, training: dict, gan_dice: float) -> Path:
    methods = {"gan": {"dice_matched_area": gan_dice}, "linear_cgma": {"dice_matched_area": 0.7}, "gradcam": {"dice_matched_area": 1.0}}
    combination = {"dataset": "shapes", "backbone": "small_vgg", "kind": "seen", "methods": methods}
    (folder / "figures").mkdir(parents=True)
    (folder / "figures" / "learning_curve.png").write_bytes(b"curve of " + folder.name.encode())
    (folder / "results.json").write_text(json.dumps({"command": command, "gan_training": training, "combinations": [combination]}))
    return folder


def test_a_faithful_run_past_its_cap_beside_the_capped_run(convergence, tmp_path, monkeypatch):
    scores = [0.58, 0.40, 0.30, 0.25, 0.24, 0.23, 0.2295, 0.2292, 0.2291, 0.2287]  # plateau from the 7th validation
    history = [{"step": 50 * (i + 1), "epoch": i // 2, "val/faithfulness": v} for i, v in enumerate(scores)]
    long_run = write_run(tmp_path / "long", "python run.py objective=faithful gan.patience=null",
                         {"steps": 500, "epochs": 5.0, "monitor": "val/faithfulness", "history": history,
                          "linear_cgma": {"val/faithfulness": 0.6}}, gan_dice=0.5)  # fmt: skip
    capped = write_run(tmp_path / "capped", "python run.py objective=faithful",
                       {"steps": 250, "stopped_by": "max_epochs", "max_epochs": 2, "monitor": "val/faithfulness",
                        "best_score": 0.25, "best_step": 200}, gan_dice=0.6)  # fmt: skip
    out = tmp_path / "results"
    monkeypatch.setattr(sys, "argv", ["convergence.py", str(long_run), "--stopped", str(capped), "--out", str(out),
                                      "--name", "faithful_convergence"])  # fmt: skip
    convergence.main()
    text = (out / "faithful_convergence.md").read_text()
    assert (out / "faithful_convergence.png").read_bytes() == b"curve of long"
    assert not (out / "gan_convergence.md").exists()
    assert "![learning curve](faithful_convergence.png)" in text and "--stopped <the stopped run> --name faithful_convergence" in text
    # 0.2295, 0.2292 and 0.2291 are each within 0.001 of 0.23: the rule stops after the third, at step 450, and keeps it
    assert "stops after step 450 and keeps the checkpoint of step 450: val/faithfulness 0.2291" in text
    assert "| 450 (rule stops) | 4 | 0.2291 |" in text
    assert "Its best val/faithfulness 0.2287 came at step 500; the linear CGMA baseline scores 0.6000 on the same" in text
    assert ("The run with the default stop (`python run.py objective=faithful`) stopped at the epoch cap (gan.max_epochs 2) "
            "after 250 steps; its best val/faithfulness 0.2500 came at step 200.") in text  # fmt: skip
    assert "| default stop (250 steps, at the epoch cap (gan.max_epochs 2)) | shapes/small_vgg (seen) | 0.600 / 0.700 / 1.000 |" in text
    assert "| trained on (500 steps) | shapes/small_vgg (seen) | 0.500 / 0.700 / 1.000 |" in text
