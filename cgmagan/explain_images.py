"""``cgmagan-explain input_dir=IMAGES run_dir=RUN``: explain a folder of your own images with a
finished run's classifier and GAN (or ``classifier_checkpoint=`` and ``gan_checkpoint=``).

Per readable image ``<stem>_<suffix>``: ``overlays/…png`` (image, Grad-CAM, GAN map), ``heatmaps/…gan.npy``
and ``heatmaps/…gradcam.npy`` (at the GAN's map size); for all: ``predictions.csv`` (predicted class and probability,
or why a file was skipped) and ``skipped.txt``. Batched, on the GPU when there is one.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from tqdm.auto import tqdm

from cgmagan.data.cgma_datamodule import to_rgb
from cgmagan.data.files import load_image
from cgmagan.errors import UserError
from cgmagan.explanation import explain, gan_settings
from cgmagan.models.classifier_module import ClassifierModule
from cgmagan.models.gan_module import CGMAGAN
from cgmagan.report import overlay_grid, save_figure
from cgmagan.settings_help import print_help_if_asked
from cgmagan.stages.gan import load_gan

log = logging.getLogger("cgmagan.explain")


@dataclass
class Explainer:
    classifier: ClassifierModule
    gan: CGMAGAN
    combination: str  # what the classifier was trained on, "dataset/backbone", or its checkpoint's name


def _checkpoints_from_run(run_dir: Path, combination: str | None) -> tuple[Path, Path, str]:
    results_file = run_dir / "results.json"
    if not results_file.is_file():
        raise UserError(f"{run_dir} holds no results.json: give a finished run folder (outputs/cgmagan/runs/<time>), "
                        "or classifier_checkpoint=... and gan_checkpoint=...")  # fmt: skip
    results = json.loads(results_file.read_text())
    combos = {f"{c['dataset']}/{c['backbone']}": c for c in results["combinations"]}
    name = combination or next(n for n, c in combos.items() if c["seen"])
    if name not in combos:
        raise UserError(f"combination={name} is not one of this run's: {', '.join(combos)}")
    if not results.get("gan_checkpoint"):
        if (results.get("config") or {}).get("trainer", {}).get("fast_dev_run"):
            raise UserError(f"{run_dir} was a fast_dev_run (debug=fast_dev_run): Lightning saves no checkpoint during "
                            "one, so it has no GAN to explain with; use a run trained without it, or give gan_checkpoint=...")  # fmt: skip
        raise UserError(f"{run_dir} kept no GAN checkpoint (callbacks.model_checkpoint was off); give gan_checkpoint=...")
    return Path(combos[name]["classifier_checkpoint"]), Path(results["gan_checkpoint"]), name


def load_explainer(cfg: DictConfig) -> Explainer:
    """The classifier and GAN that ``cfg`` names, checked to fit together."""
    if cfg.run_dir:
        classifier_path, gan_path, name = _checkpoints_from_run(Path(cfg.run_dir), cfg.combination)
    elif cfg.classifier_checkpoint and cfg.gan_checkpoint:
        classifier_path, gan_path, name = Path(cfg.classifier_checkpoint), Path(cfg.gan_checkpoint), Path(cfg.classifier_checkpoint).parent.name
    else:
        raise UserError("say which classifier and GAN explain the images: run_dir=<a finished run folder>, or "
                        "classifier_checkpoint=<classifier.ckpt> gan_checkpoint=<gan .ckpt>")  # fmt: skip
    if cfg.classifier_checkpoint and cfg.run_dir:
        classifier_path = Path(cfg.classifier_checkpoint)  # another classifier explained with the run's GAN
    if cfg.gan_checkpoint and cfg.run_dir:
        gan_path = Path(cfg.gan_checkpoint)
    if not classifier_path.is_file():
        raise UserError(f"classifier checkpoint {classifier_path} does not exist")
    try:
        classifier = ClassifierModule.load_from_checkpoint(classifier_path, map_location="cpu", weights_only=False)
    except (ValueError, TypeError, KeyError) as err:  # no description of its network: not ours, or too old
        raise UserError(f"{classifier_path} is not a self-describing classifier checkpoint of this package ({err}); "
                        "rerun the experiment to retrain it (the cache key changed with the format)") from None  # fmt: skip
    hp = classifier.hparams
    if cfg.expected_backbone and hp.backbone["name"] != cfg.expected_backbone:
        raise UserError(f"expected_backbone={cfg.expected_backbone}, but {classifier_path} is a {hp.backbone['name']} "
                        "classifier")  # fmt: skip
    gan = load_gan(gan_path)
    settings = gan_settings(gan)
    if cfg.expected_map_size and int(cfg.expected_map_size) != settings["map_size"]:
        raise UserError(f"expected_map_size={cfg.expected_map_size}, but the GAN {gan_path} was trained at map size "
                        f"{settings['map_size']}")  # fmt: skip
    return Explainer(classifier.requires_grad_(False).eval(), gan.eval(), name)


def _device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


DISPLAY_SIDE = 512  # overlays of larger images are drawn at this size on their long side


def display_image(path: Path) -> torch.Tensor:
    """The file as RGB in [0, 1] at its own resolution, [3, H, W] (long side at most DISPLAY_SIDE)."""
    image = to_rgb(load_image(path, 3, None)[None])
    scale = DISPLAY_SIDE / max(image.shape[-2:])
    if scale < 1:
        image = F.interpolate(image, scale_factor=scale, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return image[0]


def image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"input_dir={folder} is not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise UserError(f"input_dir={folder} holds no files")
    return files


def explain_folder(cfg: DictConfig) -> dict:
    """Explain every image of ``cfg.input_dir``; returns ``{"explained": [...], "skipped": [...]}``."""
    explainer = load_explainer(cfg)
    hp = explainer.classifier.hparams
    device = _device(cfg.device)
    model = explainer.classifier.net.to(device)
    out = Path(cfg.output_dir)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    (out / "heatmaps").mkdir(parents=True, exist_ok=True)
    files = image_files(Path(cfg.input_dir))
    names = hp.class_names or [str(i) for i in range(hp.num_classes)]
    rows, skipped, uncertain = [], [], []
    log.info("explaining %d files of %s with %s and %s on %s", len(files), cfg.input_dir, explainer.combination,
             type(explainer.gan.generator).__name__, device)  # fmt: skip
    progress = tqdm(total=len(files), desc="explaining", unit="image")
    for start in range(0, len(files), int(cfg.batch_size)):
        batch, paths = [], []
        for path in files[start : start + int(cfg.batch_size)]:
            try:
                batch.append(load_image(path, hp.in_channels, hp.input_size))
                paths.append(path)
            except Exception as err:  # PIL raises many kinds for unreadable files  # noqa: BLE001
                skipped.append(path)
                rows.append({"file": path.name, "status": f"skipped: {type(err).__name__}: {str(err)[:120]}"})
        if batch:
            images = torch.stack(batch)
            result = explain(model, images, gan=explainer.gan)
            for i, path in enumerate(paths):
                pred, prob = int(result.predicted[i]), float(result.probability[i])
                stem = f"{path.stem}_{path.suffix.lstrip('.')}"  # a.png and a.jpg stay apart
                np.save(out / "heatmaps" / f"{stem}.gan.npy", result.gan[i].cpu().numpy())
                np.save(out / "heatmaps" / f"{stem}.gradcam.npy", result.gradcam[i].cpu().numpy())
                # drawn over the image at its own resolution (at most DISPLAY_SIDE), the maps upsampled to it
                shown = display_image(path)
                maps = {"image": None, **{name: F.interpolate(m[i : i + 1, None].cpu(), size=shown.shape[-2:], mode="bilinear",
                                                              align_corners=False)[:, 0].clamp(0, 1)
                                          for name, m in (("Grad-CAM", result.gradcam), ("GAN", result.gan))}}  # fmt: skip
                low = prob < float(cfg.warn_below)
                if low:
                    uncertain.append(f"{path.name} ({names[pred]}, {prob:.2f})")
                title = f"{path.name}: {names[pred]} ({prob:.2f}{', low: explains a guess' if low else ''})"
                save_figure(overlay_grid(shown[None], maps, title=title, panel_inches=2.2, colorbar=True),
                            out / "overlays" / f"{stem}.png")  # fmt: skip
                rows.append({"file": path.name, "status": "explained", "predicted": pred,
                             "predicted_class": names[pred], "probability": f"{prob:.4f}"})  # fmt: skip
        progress.update(len(files[start : start + int(cfg.batch_size)]))
    progress.close()
    with open(out / "predictions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["file", "status", "predicted", "predicted_class", "probability"])
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["file"]))
    (out / "skipped.txt").write_text("".join(f"{p}\n" for p in skipped))
    if skipped:
        log.warning("skipped %d unreadable file(s): %s (listed in %s)", len(skipped), ", ".join(p.name for p in skipped),
                    out / "skipped.txt")  # fmt: skip
    if uncertain:
        log.warning("%d image(s) predicted with probability below warn_below=%s: their maps explain a guess: %s",
                    len(uncertain), cfg.warn_below, ", ".join(uncertain))  # fmt: skip
    log.info("explained %d images into %s", len(files) - len(skipped), out)
    return {"explained": [r["file"] for r in rows if r["status"] == "explained"], "skipped": [p.name for p in skipped]}


def main() -> None:
    """``--help``: explain's own settings with their descriptions; else explain the folder."""
    if print_help_if_asked("explain", sys.argv[1:], groups=False):
        return
    run()


@hydra.main(version_base="1.3", config_path="pkg://cgmagan.conf", config_name="explain")
def run(cfg: DictConfig) -> None:
    try:
        explain_folder(cfg)
    except UserError as err:
        log.error("%s", err)
        sys.exit(2)


if __name__ == "__main__":
    main()
