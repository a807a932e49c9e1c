"""The GPU check: what a user's first GPU run does, measured, in a few minutes on one GPU.

    make gpu-check                      # or, with any python3 that has the dependencies (no venv, no install):
    python3 benchmarks/gpu_check.py [--device cuda] [--out DIR] [--smoke]

1. The quickstart (`+experiment=quickstart trainer=gpu`), stage by stage.
2. One paper-size combination: ResNet50 at 256x256 on a generated Food-11 tree (a few hundred
   images of real size, benchmarks/paper_trees.py), the paper's GAN (map 64, K = 8), every method,
   bounded batches.
3. LSFT against GSFT training steps (the paper GAN, batch 32), and the CGMA precompute (every
   layer's Grad-CAM from one forward and one backward) against a bare forward + backward of the
   same ResNet50 (images/s, ratio).

For each stage it prints the wall time, images/s, peak GPU memory and the device its modules and
outputs were on, and writes the table to ``--out`` (gpu_check.md and .json). ``--smoke`` runs the same
on tiny sizes (any device; what the test suite runs on a CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def _package_without_install() -> None:
    """The config tree is ``conf/`` in the repository and ``cgmagan.conf`` once installed: map the
    one onto the other when this runs from a clone with a bare python3."""
    import importlib

    import cgmagan

    try:
        importlib.import_module("cgmagan.conf")
    except ModuleNotFoundError:
        conf = importlib.import_module("conf")
        sys.modules["cgmagan.conf"] = conf
        cgmagan.conf = conf


_package_without_install()

import torch  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from cgmagan.config import resolve_paths, validate  # noqa: E402
from cgmagan.runtime import Runtime  # noqa: E402
from cgmagan.stages.cgma import build_cgma_cache  # noqa: E402
from cgmagan.stages.classifier import train_classifiers  # noqa: E402
from cgmagan.stages.evaluate import evaluate  # noqa: E402
from cgmagan.stages.gan import train_gan  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def measured(rows: list[dict], name: str, device: torch.device, images: int | None = None):
    """One row: wall time, images/s (when ``images`` is known), peak GPU memory, the device."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    row = {"stage": name, "images": images}
    start = time.perf_counter()
    yield row
    _sync(device)
    row["seconds"] = time.perf_counter() - start
    row["peak_gpu_gib"] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    if row.get("images"):
        row["images_per_s"] = row["images"] / row["seconds"]
    rows.append(row)
    print(_line(row), flush=True)


def _line(row: dict) -> str:
    ips = f"{row['images_per_s']:9.1f} img/s" if row.get("images_per_s") else " " * 15
    mem = f"{row['peak_gpu_gib']:6.2f} GiB" if row.get("peak_gpu_gib") is not None else "     – GiB"
    return f"{row['stage']:42s} {row['seconds']:8.1f} s {ips} {mem}  on {row.get('device', '?')}"


def _config(tmp: Path, overrides: list[str]):
    with initialize_config_module("cgmagan.conf", version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.cache_dir = str(tmp / "out"), str(tmp / "cache")
        cfg.paths.data_dir = cfg.paths.data_dir if "paths.data_dir" in " ".join(overrides) else str(tmp / "data")
        cfg.print_config = False
    validate(cfg)
    resolve_paths(cfg)
    return cfg


def seen(items: int, batch_size: int, cfg) -> int:
    """Images one training epoch reads under ``trainer.limit_train_batches``."""
    limit = cfg.trainer.get("limit_train_batches")
    batches = -(-items // batch_size)
    if isinstance(limit, int):
        batches = min(batches, limit)
    elif isinstance(limit, float):
        batches = int(batches * limit)
    return min(items, batches * batch_size)


def pipeline(rows: list[dict], label: str, cfg) -> dict:
    """The four stages of one run, each measured; returns the results."""
    runtime = Runtime.from_config(cfg)
    device = runtime.root_device
    try:
        with measured(rows, f"{label}: classifiers", device) as row:
            classifiers = train_classifiers(cfg, runtime)
            row["device"] = str(next(classifiers.all[0].module.parameters()).device)
            row["images"] = sum(seen(len(c.data.dataset("train")), int(c.data.batch_size), cfg) * int(cfg.classifier.max_epochs)
                                for c in classifiers.all if not c.reused) or None  # fmt: skip
        rows_cached = int(cfg.cgma.max_per_split or 0)
        with measured(rows, f"{label}: CGMA precompute", device) as row:
            cache = build_cgma_cache(cfg, classifiers, runtime)
            row["images"] = sum(m["count"] for m in cache.datamodule.manifests.values()) or rows_cached
            row["device"] = str(device)
        with measured(rows, f"{label}: GAN training", device) as row:
            gan = train_gan(cfg, cache, runtime)
            row["device"] = str(next(gan.module.parameters()).device)
            pooled = sum(cache.datamodule.manifests[(name, "train")]["count"] for name in cache.datamodule.train_names)
            row["images"] = seen(pooled, int(cfg.gan.batch_size), cfg) * int(cfg.gan.max_epochs)
        methods = f"{len(cfg.evaluate.methods)} methods" if cfg.evaluate.methods else "every method"
        with measured(rows, f"{label}: evaluation ({methods})", device) as row:
            results = evaluate(cfg, gan, runtime).results
            row["images"] = sum(c["n_test"] for c in results["combinations"])
            row["device"] = str(device)
    finally:
        runtime.close()
    return results


def gan_steps(rows: list[dict], device: torch.device, smoke: bool) -> None:
    """LSFT vs GSFT: the paper GAN's real training step (D then G under Lightning), map 64, K = 8;
    the median of timed steps (benchmarks/gan_speed.py's measurement)."""
    from gan_speed import composed, step_seconds
    from hydra.utils import instantiate

    for conditioning in ("lsft", "gsft"):
        cfg = composed("small" if smoke else "paper", conditioning)
        batch = int(cfg.gan.batch_size)
        seconds = step_seconds(cfg, instantiate(cfg.conditioning.generator), device, steps=2 if smoke else 10, warmup=1)
        rows.append({"stage": f"paper GAN step, {conditioning.upper()} (batch {batch})", "seconds": seconds,
                     "images": batch, "images_per_s": batch / seconds, "peak_gpu_gib": None, "device": str(device)})  # fmt: skip
        print(_line(rows[-1]), flush=True)


def precompute_against_training_pass(rows: list[dict], device: torch.device, smoke: bool) -> None:
    """Every layer's Grad-CAM from one forward and one backward vs a bare forward + backward (ResNet50, 256x256)."""
    from cgmagan.backbones import build_backbone
    from cgmagan.cam import multilayer_gradcam, select_layers

    size, batch, steps, backbone = (64, 4, 2, "small_resnet") if smoke else (256, 32, 10, "resnet50")
    model = build_backbone(backbone, 3, 11).to(device).to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    layers = select_layers(model.eval(), x[:1])

    def bare():
        model.zero_grad(set_to_none=True)
        model(x).logsumexp(1).sum().backward()

    def cgmas():
        multilayer_gradcam(model, x, layers, size=64)

    timings = {}
    for name, fn in (("bare forward + backward", bare), (f"CGMA precompute ({len(layers)} layers)", cgmas)):
        fn()  # warm-up (cuDNN autotuning, allocations)
        with measured(rows, f"{backbone} {size}²: {name}", device, images=batch * steps) as row:
            for _ in range(steps):
                fn()
            row["device"] = str(device)
        timings[name] = rows[-1]["images_per_s"]
    bare_rate, cgma_rate = timings.values()
    rows.append({"stage": "CGMA precompute / bare pass (images/s ratio)", "seconds": 0.0, "ratio": cgma_rate / bare_rate})
    print(f"{'CGMA precompute / bare pass':42s} {cgma_rate / bare_rate:.2f}x", flush=True)


def markdown(rows: list[dict], device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    lines = [f"# GPU check on {name}", "", f"torch {torch.__version__}, `python3 benchmarks/gpu_check.py`", "",
             "| stage | wall s | images/s | peak GPU GiB | device |", "|---|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        if "ratio" in r:
            lines.append(f"| {r['stage']} | | {r['ratio']:.2f}× | | |")
            continue
        ips = f"{r['images_per_s']:.1f}" if r.get("images_per_s") else "–"
        mem = f"{r['peak_gpu_gib']:.2f}" if r.get("peak_gpu_gib") is not None else "–"
        lines.append(f"| {r['stage']} | {r['seconds']:.1f} | {ips} | {mem} | {r.get('device', '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else None)
    parser.add_argument("--out", type=Path, default=None, help="folder for gpu_check.md and .json")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on any device (the test suite's run on a CPU)")
    args = parser.parse_args(argv)
    if args.device is None:
        raise SystemExit("no GPU is visible (torch.cuda.is_available() is False): the GPU check is for a machine with "
                         "a GPU; `python3 benchmarks/gpu_check.py --smoke --device cpu` runs it small on the CPU")  # fmt: skip
    device = torch.device(args.device)
    trainer = ["trainer=gpu"] if device.type == "cuda" else ["trainer=cpu"]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        quick = [*trainer, "+experiment=quickstart", "logger=none"]
        if args.smoke:
            quick += ["combinations.train=[shapes/small_vgg]", "combinations.unseen=[digits/small_vgg]", "classifier.max_epochs=1",
                      "gan.max_epochs=1", "cgma.max_per_split=64", "evaluate.max_images=16", "evaluate.auc_images=4",
                      "evaluate.sanity_images=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]  # fmt: skip
        pipeline(rows, "quickstart", _config(tmp / "quickstart", quick))

        from paper_trees import tree

        data = tree(tmp / "food11-tree", "food11", 0.004 if args.smoke else 0.02)  # 66 or 333 images of real size
        paper = [*trainer, "+experiment=lsft_food_resnet", "logger=none", f"paths.data_dir={data}", "classifier.max_epochs=1",
                 "gan.max_epochs=1", "trainer.limit_train_batches=8", "trainer.limit_val_batches=2", "cgma.max_per_split=128",
                 "evaluate.max_images=32", "evaluate.auc_images=8", "evaluate.road_images=2", "evaluate.sanity_images=0",
                 "dataset.num_workers=4", "gan.num_workers=2"]  # fmt: skip
        if args.smoke:
            paper += ["backbone=small_resnet", "dataset.input_size=64", "gan=small", "cgma.max_per_split=16",
                      "evaluate.max_images=8", "evaluate.auc_images=2", "evaluate.road_images=1", "dataset.num_workers=0",
                      "gan.num_workers=0", "+dataset.fractions=[0.6,0.2,0.2]"]  # fmt: skip
        pipeline(rows, "paper ResNet50 256² Food-11" if not args.smoke else "paper-like (smoke)", _config(tmp / "paper", paper))
    gan_steps(rows, device, args.smoke)
    precompute_against_training_pass(rows, device, args.smoke)
    text = markdown(rows, device)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.md").write_text(text)
        (args.out / "gpu_check.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
