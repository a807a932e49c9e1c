"""notebooks/quickstart.ipynb: executed end to end on a tiny finished run, and committed without
outputs; the loading helpers of cgmagan/notebook.py on hand-made folders."""

import base64
import json
import sys
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient

from cgmagan.notebook import (
    NO_TRAINING_BASELINES,
    RUN_DIR_ENV,
    find_run,
    gan_metrics_csv,
    gan_vs_baselines,
    training_curves,
)

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
CLEAR = ("clear them: .venv/bin/python -c \"import nbformat as n; p='notebooks/quickstart.ipynb'; b=n.read(p, 4); "
         "[c.update(outputs=[], execution_count=None) for c in b.cells if c.cell_type == 'code']; n.write(b, p)\"")  # fmt: skip


def _outputs(nb, snippet: str) -> list:
    cells = [c for c in nb.cells if c.cell_type == "code" and snippet in c.source]
    assert len(cells) == 1, snippet
    return cells[0].outputs


def _markdown(outputs) -> str:
    return "\n".join(o.data["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))


def _pngs(outputs) -> list[bytes]:
    return [base64.b64decode(o.data["image/png"]) for o in outputs if "image/png" in o.get("data", {})]


def test_quickstart_notebook_runs_on_a_finished_run_and_shows_its_numbers(tmp_path, monkeypatch, finished_run):
    run, results = finished_run
    run = run.resolve()
    # a kernel that runs this very interpreter (the venv's), whatever kernelspecs the machine has
    write_kernel_spec(tmp_path / "jupyter" / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv(RUN_DIR_ENV, str(run))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    client = NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first cell that raises

    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert _outputs(nb, "print(sys.executable)")[0].text.strip() == sys.executable
    assert _outputs(nb, "run = find_run()")[0].text.strip() == f"run: {run}"
    settings = _markdown(_outputs(nb, "settings_markdown("))
    assert f"conditioning **{results['conditioning'].upper()}**, seed {results['seed']}" in settings
    assert results["command"] in settings

    table = _markdown(_outputs(nb, "results_markdown("))
    comparison = _markdown(_outputs(nb, "gan_vs_baselines("))
    for combo in results["combinations"]:
        methods = combo["methods"]
        name = f"{combo['dataset']}/{combo['backbone']} ({combo['kind'].replace('_', ' ')})"
        assert f"**{name}**, classifier test accuracy {100 * combo['classifier_accuracy']:.1f} %" in table
        assert f"| **gan** | {methods['gan']['dice']:.3f} | {methods['gan']['dice_matched_area']:.3f} | " in table
        assert f"| gradcam | {methods['gradcam']['dice']:.3f} |" in table
        best = max(NO_TRAINING_BASELINES, key=lambda m: (methods[m]["dice"], methods[m]["pearson"]))
        assert (f"| {name} | {best} | {methods['gan']['dice']:.3f} | {methods[best]['dice']:.3f} | "
                f"{methods['gan']['pearson']:.3f} | {methods[best]['pearson']:.3f} |") in comparison  # fmt: skip

    assert _pngs(_outputs(nb, '"overlays.png"')) == [(run / "overlays.png").read_bytes()]
    assert _pngs(_outputs(nb, '"condition_importance.png"')) == [(run / "condition_importance.png").read_bytes()]
    assert len(_pngs(_outputs(nb, "training_curves("))) == 1  # the GAN's curves
    assert len(_pngs(_outputs(nb, "gan_vs_baselines("))) == 1  # GAN vs best baseline bars
    curves = training_curves(gan_metrics_csv(run))
    assert {"train", "val"} <= set(curves) and "val/dice" in curves["val"]


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code), CLEAR
    assert nb.metadata.kernelspec.name == "python3"


def test_find_run_takes_the_env_or_the_newest_finished_run(tmp_path, monkeypatch):
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    runs = tmp_path / "outputs" / "cgmagan" / "runs"
    (tmp_path / "notebooks").mkdir()
    with pytest.raises(FileNotFoundError, match="make quickstart"):
        find_run(tmp_path / "notebooks")
    for name, finished in [("2026-01-01_09-00-00", True), ("2026-01-02_09-00-00", True), ("2026-01-03_09-00-00", False)]:
        (runs / name).mkdir(parents=True)
        if finished:
            (runs / name / "results.json").write_text("{}")
    newest = runs / "2026-01-02_09-00-00"  # the later one never finished
    assert find_run(tmp_path / "notebooks") == find_run(tmp_path) == newest.resolve()
    monkeypatch.setenv(RUN_DIR_ENV, str(runs / "2026-01-01_09-00-00"))
    assert find_run(tmp_path) == (runs / "2026-01-01_09-00-00").resolve()
    monkeypatch.setenv(RUN_DIR_ENV, str(runs / "2026-01-03_09-00-00"))
    with pytest.raises(FileNotFoundError, match="holds no results.json"):
        find_run(tmp_path)


def test_training_curves_and_best_baseline(tmp_path):
    for version, l1 in [(2, "0.9"), (10, "0.5")]:  # version_10 is the newer, not version_2
        folder = tmp_path / "gan" / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text("epoch,step,test/digits/small_vgg/gan/dice,train/l1,val/dice\n"
                                            f"0,0,,{l1},\n0,1,,0.4,\n0,1,,,0.3\n1,3,,,0.35\n,4,0.2,,\n")  # fmt: skip
    curves = training_curves(gan_metrics_csv(tmp_path))
    assert curves == {"train": {"train/l1": ([0, 1], [0.5, 0.4])}, "val": {"val/dice": ([1, 3], [0.3, 0.35])}}
    assert gan_metrics_csv(tmp_path / "nothing") is None

    def scores(dice, pearson):
        return {"dice": dice, "pearson": pearson, "mae": 0.1}

    combo = {"dataset": "digits", "backbone": "small_vgg", "kind": "seen", "methods": {
        "gradcam": scores(1.0, 1.0), "gan": scores(0.6, 0.7), "last_cgma": scores(0.5, 0.2),
        "centred_gaussian": scores(0.5, 0.4), "gradcam_pp": scores(0.9, 0.9)}}  # fmt: skip
    no_baseline = {**combo, "methods": {"gan": scores(0.6, 0.7)}}
    without_gan = {**combo, "methods": {"gradcam": scores(1.0, 1.0)}}
    rows = gan_vs_baselines({"combinations": [combo, no_baseline, without_gan]})
    assert [(r["baseline"], r["best_baseline"]) for r in rows] == [("centred_gaussian", {"dice": 0.5, "pearson": 0.4}),
                                                                   (None, None)]  # fmt: skip
    assert rows[0]["gan"] == {"dice": 0.6, "pearson": 0.7} and rows[0]["gradcam"] == {"dice": 1.0, "pearson": 1.0}
    json.dumps(rows)  # plain data
