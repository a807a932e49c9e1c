"""Explaining new images with a finished run: the Python API and the cgmagan-explain command."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import open_dict
from PIL import Image

from cgmagan import explain
from cgmagan.errors import UserError
from cgmagan.explain_images import explain_folder
from cgmagan.models.classifier_module import ClassifierModule
from cgmagan.stages.gan import load_gan

ROOT = Path(__file__).resolve().parents[1]


def explain_config(tmp_path: Path, overrides: list[str]):
    with initialize_config_module("cgmagan.conf", version_base="1.3"):
        cfg = compose("explain", overrides=overrides)
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "explained")
    return cfg


def image_folder(root: Path) -> Path:
    """Five files as users have them: grayscale, RGBA PNG, palette, a JPEG of another size, one corrupt."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8), "L").save(root / "grey.png")
    Image.fromarray(rng.integers(0, 255, (30, 50, 4), dtype=np.uint8), "RGBA").save(root / "alpha.png")
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "RGB").convert("P").save(root / "palette.png")
    Image.fromarray(rng.integers(0, 255, (120, 90, 3), dtype=np.uint8), "RGB").save(root / "photo.jpg")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def test_explain_command_on_a_folder_writes_overlays_heatmaps_and_names_the_skipped_file(tmp_path, finished_run,
                                                                                          monkeypatch, caplog):  # fmt: skip
    import cgmagan.explain_images

    drawn, draw = {}, cgmagan.explain_images.overlay_grid

    def drawing(images, columns, title="", **kwargs):  # what each overlay shows, then the real drawing
        drawn[title.split(":")[0]] = (tuple(images.shape), {k: None if v is None else tuple(v.shape) for k, v in columns.items()},
                                      title, kwargs.get("colorbar"))  # fmt: skip
        return draw(images, columns, title, **kwargs)

    monkeypatch.setattr(cgmagan.explain_images, "overlay_grid", drawing)
    run, results = finished_run
    images = image_folder(tmp_path / "images")
    with caplog.at_level("WARNING"):
        summary = explain_folder(explain_config(tmp_path, [f"input_dir={images}", f"run_dir={run}", "batch_size=3",
                                                           "warn_below=1.01"]))  # every prediction is "low"  # fmt: skip
    # the maps upsampled over each image at its own resolution (photo.jpg is 90 wide, 120 high), with a colour bar
    assert drawn["photo.jpg"][:2] == ((1, 3, 120, 90), {"image": None, "Grad-CAM": (1, 120, 90), "GAN": (1, 120, 90)})
    assert drawn["grey.png"][0] == (1, 3, 40, 40) and all(d[3] for d in drawn.values())
    assert "low: explains a guess" in drawn["alpha.png"][2] and "4 image(s) predicted with probability below" in caplog.text
    out = tmp_path / "explained"
    assert sorted(summary["explained"]) == ["alpha.png", "grey.png", "palette.png", "photo.jpg"]
    assert summary["skipped"] == ["broken.jpg"]
    assert len(list((out / "overlays").glob("*.png"))) == 4
    gan_maps = sorted((out / "heatmaps").glob("*.gan.npy"))
    assert len(gan_maps) == 4 and len(list((out / "heatmaps").glob("*.gradcam.npy"))) == 4
    size = results["config"]["gan"]["map_size"]
    for path in gan_maps:
        heatmap = np.load(path)
        assert heatmap.shape == (size, size) and 0 <= heatmap.min() and heatmap.max() <= 1
    rows = {r["file"]: r for r in csv.DictReader(open(out / "predictions.csv"))}
    assert rows["broken.jpg"]["status"].startswith("skipped: ")
    classes = [str(d) for d in range(10)]  # the run's first seen combination: digits/small_vgg
    for name in summary["explained"]:
        assert rows[name]["status"] == "explained" and rows[name]["predicted_class"] in classes
        assert 0 < float(rows[name]["probability"]) <= 1
    assert (out / "skipped.txt").read_text().strip().endswith("broken.jpg")


def test_explain_console_script_runs_and_exits_2_on_a_user_error(tmp_path, finished_run):
    run, _ = finished_run
    images = image_folder(tmp_path / "images")
    script = Path(sys.executable).parent / "cgmagan-explain"
    done = subprocess.run([str(script), f"input_dir={images}", f"run_dir={run}", "combination=shapes/small_mobilenet",
                           f"hydra.run.dir={tmp_path / 'cli'}"], capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((tmp_path / "cli" / "overlays").glob("*.png"))) == 4
    assert "skipped 1 unreadable file(s): broken.jpg" in done.stderr + done.stdout
    wrong = subprocess.run([str(script), f"input_dir={images}", f"run_dir={run}", "expected_map_size=64",
                            f"hydra.run.dir={tmp_path / 'wrong'}"], capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert wrong.returncode == 2 and "expected_map_size=64, but the GAN" in wrong.stderr + wrong.stdout
    assert "Traceback" not in wrong.stderr


@pytest.mark.parametrize("override,message", [
    ("expected_backbone=small_resnet", "expected_backbone=small_resnet, but .* is a small_vgg classifier"),
    ("expected_map_size=64", "expected_map_size=64, but the GAN .* was trained at map size 16"),
    ("combination=cifar10/vgg16", "combination=cifar10/vgg16 is not one of this run's"),
])  # fmt: skip
def test_checkpoints_that_do_not_fit_are_clear_errors(tmp_path, finished_run, override, message):
    run, _ = finished_run
    images = image_folder(tmp_path / "images")
    with pytest.raises(UserError, match=message):
        explain_folder(explain_config(tmp_path, [f"input_dir={images}", f"run_dir={run}", override]))


def test_a_gan_checkpoint_given_as_the_classifier_is_a_clear_error(tmp_path, finished_run):
    run, results = finished_run
    images = image_folder(tmp_path / "images")
    cfg = explain_config(tmp_path, [f"input_dir={images}", f"classifier_checkpoint={results['gan_checkpoint']}",
                                    f"gan_checkpoint={results['gan_checkpoint']}"])  # fmt: skip
    with pytest.raises(UserError, match="is not a self-describing classifier checkpoint"):
        explain_folder(cfg)


def test_api_builds_the_gan_input_exactly_like_the_cgma_cache(finished_run):
    from omegaconf import OmegaConf

    from cgmagan.data.cgma_datamodule import CGMASource, ShardComputer
    from cgmagan.data.shapes import ShapesDataModule

    run, results = finished_run
    combo = next(c for c in results["combinations"] if c["dataset"] == "shapes" and c["seen"])
    classifier = ClassifierModule.load_from_checkpoint(combo["classifier_checkpoint"], map_location="cpu",
                                                       weights_only=False).eval()  # as the classifier stage leaves it
    gan = load_gan(results["gan_checkpoint"]).eval()  # rebuilt from the checkpoint's own description
    data = ShapesDataModule(input_size=classifier.hparams.input_size, split_sizes=(8, 8, 8), seed=0)
    data.setup()
    # what the CGMA precompute stores for test items 0..5 (float16), and what the API gives
    cgma_cfg = OmegaConf.create(results["config"]["cgma"])
    cached, _ = ShardComputer(CGMASource("shapes", classifier.net, data, "-"), "test", np.arange(6), cgma_cfg,
                              torch.device("cpu"))(range(6))  # fmt: skip
    images = torch.stack([data.dataset("test")[i][0] for i in range(6)])
    out = explain(classifier.net, images, gan=gan)
    k, size = cgma_cfg.k, cgma_cfg.map_size
    assert out.cgmas.shape == (6, k, size, size) and out.gan.shape == (6, size, size)
    assert torch.allclose(out.cgmas, torch.from_numpy(cached["cgma"]).float(), atol=1e-3)  # float16 rounding
    assert torch.allclose(out.gradcam, torch.from_numpy(cached["target"]).float(), atol=1e-3)
    assert torch.equal(out.predicted, torch.from_numpy(cached["pred"]))
    with torch.no_grad():  # the GAN on the cached inputs, as in training and evaluation
        from_cache = gan(torch.from_numpy(cached["image"]).float(), torch.from_numpy(cached["cgma"]).float())
    assert torch.allclose(out.gan, from_cache, atol=2e-2) and (out.gan - from_cache).abs().mean() < 2e-3

    # a class per image changes what Grad-CAM explains; the predicted class gives the default maps
    other = (out.predicted + 1) % classifier.hparams.num_classes
    retargeted = explain(classifier.net, images, gan=gan, targets=other)
    assert torch.equal(retargeted.target, other) and not torch.allclose(retargeted.gradcam, out.gradcam)
    assert torch.allclose(explain(classifier.net, images, gan=gan, targets=out.predicted).gradcam, out.gradcam)


def _state(module: torch.nn.Module) -> dict:
    """Everything of a module a caller could see change: tensors, gradients, devices, modes."""
    return {"tensors": {k: v.clone() for k, v in module.state_dict(keep_vars=True).items()},
            "grads": {k: None if p.grad is None else p.grad.clone() for k, p in module.named_parameters()},
            "requires_grad": {k: p.requires_grad for k, p in module.named_parameters()},
            "modes": [m.training for m in module.modules()]}  # fmt: skip


def _same(a: dict, b: dict) -> bool:
    tensors = all(torch.equal(a["tensors"][k], b["tensors"][k]) and a["tensors"][k].device == b["tensors"][k].device
                  for k in a["tensors"])  # fmt: skip
    grads = all((a["grads"][k] is None) == (b["grads"][k] is None) and (a["grads"][k] is None or torch.equal(a["grads"][k], b["grads"][k]))
                for k in a["grads"])  # fmt: skip
    return tensors and grads and a["requires_grad"] == b["requires_grad"] and a["modes"] == b["modes"]


def test_explain_leaves_a_train_mode_model_and_the_gan_exactly_as_they_were(finished_run):
    """A user's ResNet-18 in training (BatchNorm statistics would move in a train-mode forward),
    with gradients of its own and one BatchNorm frozen in eval mode, and a GAN in train mode: two
    explain() calls change no bit of either, nor a mode, nor a device."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(num_classes=5).train()
    model.layer1[0].bn1.eval()  # a frozen BatchNorm inside a model in training
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    gan = load_gan(finished_run[1]["gan_checkpoint"]).train()
    before = (_state(model), _state(gan))
    images = torch.rand(3, 3, 128, 128)  # layer4 at 4x4
    first = explain(model, images, gan=gan)
    second = explain(model, images, gan=gan)
    assert _same(before[0], _state(model)) and _same(before[1], _state(gan))
    assert torch.equal(first.gan, second.gan) and torch.equal(first.gradcam, second.gradcam)
    assert model.training and not model.layer1[0].bn1.training and gan.training


def test_the_readmes_python_snippet_runs_as_printed_on_a_finished_run(finished_run, monkeypatch):
    run, _ = finished_run
    readme = (ROOT / "README.md").read_text()
    snippet = readme.split("Inside your own code", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert 'run = Path("outputs/cgmagan/runs/<time>")' in snippet
    namespace: dict = {}
    exec(snippet.replace("outputs/cgmagan/runs/<time>", str(run)), namespace)  # noqa: S102
    out, classifier = namespace["out"], namespace["classifier"]
    assert out.gan.shape == out.gradcam.shape and out.gan.shape[0] == namespace["images"].shape[0]
    assert out.predicted.device == next(classifier.parameters()).device
