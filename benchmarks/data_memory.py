"""Memory of the paper's datasets at their input size (256x256): peak RSS to set each one up,
fingerprint it (the cache keys) and read its first batches, at 10 % and 100 % of its published
image count, on generated trees in the published layouts (benchmarks/paper_trees.py).

    make bench     # or: python benchmarks/data_memory.py [--fractions 0.1 1.0] [--only cifar10 ...]

Each measurement runs in a fresh process (peak RSS from the kernel, ``ru_maxrss``), with the
loader in that process (``num_workers=0``), so the resize of every item is counted. The last
column is what holding the whole dataset upsampled to 256x256 in float32 would take, as the
torchvision datasets did before they were kept at their stored size.

Writes benchmarks/data_memory.md and prints it. Generated trees stay under .cache/bench_data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from paper_trees import WRITERS, tree  # noqa: E402

BATCHES, BATCH_SIZE = 4, 32
CHANNELS = {"mnist": 1, "emnist": 1, "cifar10": 3, "food11": 3, "animals10": 3, "chinese_mnist": 1}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def measure(name: str, data_dir: Path) -> dict:
    """In this (fresh) process: set up dataset ``name`` as the pipeline does, fingerprint it, read batches."""
    import torch
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate
    from omegaconf import open_dict

    import cgmagan.data.kaggle  # noqa: F401  (what any dataset's process holds before its data)
    import cgmagan.data.torchvision_sets  # noqa: F401

    torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=16, mode="bilinear")

    with initialize_config_module("cgmagan.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"dataset={name}"])
    with tempfile.TemporaryDirectory() as cache, open_dict(cfg):
        cfg.paths.data_dir, cfg.paths.cache_dir = str(data_dir), cache
        cfg.dataset.num_workers = 0
        cfg.dataset.batch_size = BATCH_SIZE
        after_import = rss_mb()
        start = time.perf_counter()
        dm = instantiate({k: v for k, v in cfg.dataset.items() if k != "name"})  # as a combination builds it
        dm.setup()
        dm.fingerprint()
        setup_s = time.perf_counter() - start
        shapes = set()
        for split, count in (("train", BATCHES), ("test", 1)):
            loader = dm.loader(split, shuffle=split == "train")
            for i, (x, _) in enumerate(loader):
                shapes.add(tuple(x.shape[1:]))
                if i + 1 == count:
                    break
        return {"images": sum(len(dm.dataset(s)) for s in ("train", "val", "test")), "input_size": dm.input_size,
                "item_shapes": sorted(shapes), "setup_s": setup_s, "read_s": time.perf_counter() - start - setup_s,
                "after_import_mb": after_import, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def run(names: list[str], fractions: list[float], data_root: Path) -> dict:
    results: dict = {}
    for fraction in fractions:
        for name in names:
            data_dir = data_root / str(fraction)
            started = time.perf_counter()
            tree(data_dir, name, fraction)
            made = time.perf_counter() - started
            done = subprocess.run([sys.executable, __file__, "--measure", name, str(data_dir)], capture_output=True,
                                  text=True, check=False, cwd=ROOT)  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"{name} at {fraction}: {done.stderr[-3000:]}")
            results[(name, fraction)] = {**json.loads(done.stdout.strip().splitlines()[-1]), "generated_s": made}
            r = results[(name, fraction)]
            print(f"{name:14s} {fraction:>5.0%} {r['images']:>7d} images  peak RSS {r['peak_mb']:7.0f} MB  "
                  f"setup {r['setup_s']:.1f} s", flush=True)  # fmt: skip
    return results


def table(results: dict, names: list[str], fractions: list[float]) -> str:
    lo, hi = min(fractions), max(fractions)
    lines = [
        "# Data memory: the paper's datasets at 256x256",
        "",
        f"`make bench` (benchmarks/data_memory.py) on {platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}. Peak RSS of a fresh process that sets the dataset up, "
        f"fingerprints it and reads {BATCHES} shuffled training batches and one test batch of {BATCH_SIZE} at 256x256 "
        "(`num_workers=0`: every resize counted here); generated trees in the published layouts, synthetic pixels, "
        "real image sizes (benchmarks/paper_trees.py).",
        "",
        f"| dataset | images at {lo:.0%} | peak RSS at {lo:.0%} | images at {hi:.0%} | peak RSS at {hi:.0%} | "
        f"above the imports at {hi:.0%} | growth | set-up at {hi:.0%} | upsampled whole (float32) at {hi:.0%} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        a, b = results.get((name, lo)), results.get((name, hi))
        if a is None or b is None:
            continue
        whole = b["images"] * CHANNELS[name] * b["input_size"] ** 2 * 4 / 2**30
        lines.append(f"| {name} | {a['images']:,} | {a['peak_mb']:,.0f} MB | {b['images']:,} | {b['peak_mb']:,.0f} MB | "
                     f"{b['peak_mb'] - b['after_import_mb']:,.0f} MB | {b['peak_mb'] - a['peak_mb']:+,.0f} MB | {b['setup_s']:.1f} s | "
                     f"{whole:,.1f} GB |")  # fmt: skip
    base = min(r["after_import_mb"] for r in results.values())
    lines += ["", f"A process holds {base:,.0f} MB after importing torch (a CUDA build), Lightning and the package, before "
              "any data. "
              "Growth is the peak at the full size minus the peak at the small one: the images themselves stay on "
              "disk (file datasets) or at their stored resolution in uint8 (MNIST, EMNIST, CIFAR-10 files, decoded "
              "whole by torchvision); only a batch is ever resized. Set-up includes the fingerprint and, for the file "
              "datasets, the first decode of every image to find unreadable ones (remembered for later runs).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--only", nargs="+", default=list(WRITERS), choices=list(WRITERS))
    parser.add_argument("--data", type=Path, default=ROOT / ".cache" / "bench_data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "data_memory.md")
    parser.add_argument("--measure", nargs=2, metavar=("NAME", "DATA_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]))))
        return
    results = run(args.only, args.fractions, args.data)
    text = table(results, args.only, args.fractions)
    args.out.write_text(text)
    print(text)
    print("written to", args.out)


if __name__ == "__main__":
    main()
