"""A W&B run, offline as on CI: what users open W&B for is in the run's files and records."""

import base64
import hashlib
import json
from pathlib import Path

from tests.wandb_records import of_kind, records


def _md5_b64(path: str | Path) -> str:
    return base64.b64encode(hashlib.md5(Path(path).read_bytes()).digest()).decode()


def test_offline_wandb_run_holds_config_results_table_captioned_overlays_and_artifacts(finished_run):
    out, results = finished_run
    (run_file,) = out.glob("wandb/offline-run-*/run-*.wandb")
    files = run_file.parent / "files"

    (run,) = of_kind(run_file, "run")
    assert run.project == "cgmagan" and run.job_type == "experiment" and run.run_group == ""  # a single run: no sweep group
    assert list(run.tags) == ["lsft", "seed0"]
    config = {item.key: json.loads(item.value_json) for r in of_kind(run_file, "config") for item in r.update}
    assert config["dataset"]["name"] == "digits" and config["backbone"]["name"] == "small_vgg"
    assert config["cgma"]["k"] == 8 and config["seed"] == 0 and config["conditioning"]["name"] == "lsft"
    assert config["combinations"]["train"] == ["digits/small_vgg", "shapes/small_resnet"]

    # the results table: a row per (combination, method), the numbers of results.json
    (table_file,) = files.glob("media/table/results_*.table.json")
    table = json.loads(table_file.read_text())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert len(rows) == sum(len(c["methods"]) for c in results["combinations"])
    for combo in results["combinations"]:
        (gan,) = [r for r in rows if (r["dataset"], r["backbone"], r["method"]) == (combo["dataset"], combo["backbone"], "gan")]
        assert gan["dice"] == combo["methods"]["gan"]["dice"] and gan["kind"] == combo["kind"]

    # captioned panels: one per overlay row of every combination, naming true and predicted class
    history = [{item.key or "/".join(item.nested_key): item.value_json for item in h.item} for h in of_kind(run_file, "history")]
    (panels,) = [h for h in history if "test/explanations/captions" in h]
    captions = json.loads(panels["test/explanations/captions"])
    assert len(captions) == config["evaluate"]["overlay_rows"] * len(results["combinations"]) > 0
    assert captions[0].startswith("digits/small_vgg (seen): true ") and "predicted" in captions[0]
    assert any(c.startswith("shapes/small_mobilenet (unseen backbone)") for c in captions)
    for name in json.loads(panels["test/explanations/filenames"]):
        assert (files / name).stat().st_size > 1000
    assert any(files.glob("media/images/test/overlays_*.png")), "the whole overlay grid too"
    assert "val/grid" in "".join(k for h in history for k in h), "validation grids during training"
    assert "val/learning_curve" in "".join(k for h in history for k in h), "and the learning curve at its end"

    # artifacts: the GAN checkpoint the results come from, and the CGMA cache manifests
    artifacts = {a.type: a for a in of_kind(run_file, "artifact")}
    (entry,) = artifacts["model"].manifest.contents
    assert entry.path == "gan.ckpt" and entry.digest == _md5_b64(results["gan_checkpoint"])
    assert "best" in artifacts["model"].aliases
    (manifests,) = artifacts["cgma-cache"].manifest.contents
    assert manifests.digest == _md5_b64(out / "cgma_manifests.json")
    assert set(json.loads((out / "cgma_manifests.json").read_text())) == {
        f"{c['dataset']}/{c['backbone']}/{split}" for c in results["combinations"] for split in ("train", "val", "test")}

    summary = {item.key or "/".join(item.nested_key): item.value_json for s in of_kind(run_file, "summary") for item in s.update}
    assert json.loads(summary["digits/small_vgg/gan/dice"]) == results["combinations"][0]["methods"]["gan"]["dice"]
    assert any(r.WhichOneof("record_type") == "exit" for r in records(run_file)), "the run was finished"
    assert (out / "gan" / "version_0" / "metrics.csv").is_file(), "the CSV log stays beside W&B"
