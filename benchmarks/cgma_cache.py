"""CGMA cache: memory of a streaming precompute, and memmapped reads vs what the GAN consumes.

    make bench            # or: python benchmarks/cgma_cache.py --parts memory --images 4096 65536 --memory-limit 2

Streaming: each size is precomputed in a fresh process (synthetic images made on the fly, so the
inputs are not in memory either) and its peak RSS is read from the kernel. Run as root on Linux,
the process is also put in a memory cgroup smaller than the cache it writes: the cache of a split
larger than the memory the process may use.

Reading: the GAN's training dataloader over the cache (shuffled, the pipeline's loader), from a
cold page cache when the kernel lets us drop it, vs the samples/s of GAN training steps
(time inside ``training_step`` only) for the embedded and the paper GAN settings.

Writes benchmarks/cgma_cache_memory.md and benchmarks/cgma_cache_reading.md and prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from cgmagan.backbones import build_backbone
from cgmagan.data.cgma_datamodule import CGMADataModule, CGMASource

BACKBONE = "small_resnet"
PRECOMPUTE_BATCH = 64


class SyntheticImages(Dataset):
    """Image i is made from seed i when asked for: a split of any size costs no memory."""

    def __init__(self, count: int, size: int, num_classes: int = 10):
        self.count, self.size, self.num_classes = count, size, num_classes

    def __len__(self) -> int:
        return self.count

    @property
    def labels(self) -> np.ndarray:
        return np.arange(self.count) % self.num_classes

    def __getitem__(self, i: int):
        image = torch.rand(3, self.size, self.size, generator=torch.Generator().manual_seed(i))
        return image, int(self.labels[i])


class SyntheticSplits:
    """What CGMADataModule asks of a classification datamodule: ``dataset(split)``, ``labels(split)``."""

    def __init__(self, train: int, size: int, held_out: int = 64):
        self.sizes = {"train": train, "val": held_out, "test": held_out}
        self.size = size

    def dataset(self, split: str) -> SyntheticImages:
        return SyntheticImages(self.sizes[split], self.size)

    def labels(self, split: str) -> np.ndarray:
        return self.dataset(split).labels


def cgma_datamodule(cache: Path, images: int, size: int, map_size: int, shard_size: int = 512,
                    batch_size: int = 32) -> CGMADataModule:  # fmt: skip
    torch.manual_seed(0)
    model = build_backbone(BACKBONE, 3, 10).eval().requires_grad_(False)
    cfg = OmegaConf.create({"k": 8, "order": "forward", "exclude_target_layer": False, "map_size": map_size,
                            "batch_size": PRECOMPUTE_BATCH, "shard_size": shard_size, "max_per_split": None,
                            "verify": "stat"})  # fmt: skip
    name = f"synthetic/{BACKBONE}"
    source = CGMASource(name, model, SyntheticSplits(images, size), f"random-init-{size}")
    return CGMADataModule([source], [name], cfg, str(cache), batch_size=batch_size)


def rss_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def precompute_child(args) -> None:
    """Runs in its own process: precompute one split, print what it cost as one JSON line."""
    torch.set_num_threads(args.threads)
    dm = cgma_datamodule(Path(args.cache), args.images, args.size, args.map_size, args.shard_size)
    before = rss_mib("VmRSS")
    start = time.perf_counter()
    dm.prepare_data()
    seconds = time.perf_counter() - start
    cache_bytes = sum(p.stat().st_size for p in Path(args.cache).rglob("*.npy"))
    print(json.dumps({"images": args.images, "shard_size": args.shard_size, "seconds": seconds, "cache_gib": cache_bytes / 2**30,
                      "rss_before_mib": before, "peak_rss_mib": rss_mib("VmHWM")}))  # fmt: skip


def memory_cgroup(limit_bytes: int) -> Path | None:
    """A fresh memory cgroup (v1 or v2) limited to ``limit_bytes``, or None where we may not make one."""
    for base, limit_file in ((Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"),
                             (Path("/sys/fs/cgroup"), "memory.max")):  # fmt: skip
        group = base / f"cgmagan-bench-{os.getpid()}"
        try:
            group.mkdir()
            (group / limit_file).write_text(str(limit_bytes))
            return group
        except OSError:
            if group.is_dir():
                group.rmdir()
    return None


def measure_streaming(args, workdir: Path) -> list[dict]:
    limit = int(args.memory_limit * 2**30) if args.memory_limit else 0
    rows = []
    runs = [(n, args.shard_size) for n in args.images] + [(args.images[0], s) for s in args.other_shard_sizes]
    for images, shard_size in runs:
        cache = workdir / f"stream-{images}-{shard_size}"
        group = memory_cgroup(limit) if limit else None
        cmd = [sys.executable, __file__, "precompute", "--images", str(images), "--cache", str(cache),
               "--size", str(args.size), "--map-size", str(args.map_size), "--shard-size", str(shard_size),
               "--threads", str(args.threads)]  # fmt: skip
        enter = (lambda g=group: (g / "cgroup.procs").write_text(str(os.getpid()))) if group else None
        try:
            # stderr passes through: the child's progress bar shows, and its errors
            done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, preexec_fn=enter, check=False)
        finally:
            if group:
                group.rmdir()
        if done.returncode != 0:
            raise RuntimeError(f"precompute of {images} images failed (exit {done.returncode}); its error is above")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["memory_limit_gib"] = args.memory_limit if group else None
        rows.append(row)
        print(f"  streaming {images} images, shards of {shard_size}: {row['cache_gib']:.2f} GiB cache, peak RSS {row['peak_rss_mib']:.0f} MiB",
              flush=True)  # fmt: skip
        shutil.rmtree(cache)
    return rows


def drop_page_cache() -> bool:
    """Evict file pages so the next reads come from disk (needs root)."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1")
        return True
    except OSError:
        return False


def samples_per_second(loader, limit: int) -> float:
    seen, start = 0, time.perf_counter()
    for batch in loader:
        seen += len(batch["target"])
        if seen >= limit:
            break
    return seen / (time.perf_counter() - start)


class StepTimer(pl.Callback):
    """Seconds spent inside training steps, the first ``skip`` left out (warm-up)."""

    def __init__(self, skip: int = 2):
        self.skip, self.seconds, self.samples = skip, 0.0, 0

    def on_train_batch_start(self, trainer, module, batch, idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, idx):
        if idx >= self.skip:
            self.seconds += time.perf_counter() - self._start
            self.samples += len(batch["target"])


def gan_samples_per_second(gan_option: str, dm: CGMADataModule, steps: int) -> float:
    with initialize_config_module("cgmagan.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"gan={gan_option}", "conditioning=lsft"])
    gan = instantiate(cfg.gan.module)
    timer = StepTimer()
    # batches, not max_steps: with two optimisers every training step counts as two
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=steps + timer.skip, limit_val_batches=0,
                         logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[timer])  # fmt: skip
    trainer.fit(gan, train_dataloaders=dm.train_dataloader())
    return timer.samples / timer.seconds


def measure_reading(args, workdir: Path) -> list[dict]:
    rows = []
    for gan_option, map_size in (("small", 32), ("paper", 64)):
        dm = cgma_datamodule(workdir / f"read-{map_size}", args.read_images, args.size, map_size, batch_size=32)
        dm.prepare_data()
        dm.setup("fit")
        cold = drop_page_cache()
        first = samples_per_second(dm.train_dataloader(), args.read_images)
        warm = samples_per_second(dm.train_dataloader(), args.read_images)
        consume = gan_samples_per_second(gan_option, dm, args.gan_steps)
        rows.append({"gan": gan_option, "map_size": map_size, "read_first": first, "first_is_cold": cold,
                     "read_warm": warm, "gan_consumes": consume})  # fmt: skip
        print(f"  reading gan={gan_option}: {first:.0f} ({'cold' if cold else 'first pass'}) / {warm:.0f} (warm) "
              f"samples/s vs GAN {consume:.1f}", flush=True)  # fmt: skip
    return rows


def header(title: str, args) -> list[str]:
    cpu = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    return [
        f"# {title}",
        "",
        f"Device: {cpu}; torch {torch.__version__}; classifier {BACKBONE} (random init), input "
        f"{args.size}x{args.size}, K = 8, shard {args.shard_size} images, float16 maps.",
        f"Command: `{' '.join(['python benchmarks/cgma_cache.py', *sys.argv[1:]])}`",
        "",
    ]


def memory_markdown(args, streaming: list[dict]) -> str:
    lines = header("CGMA cache: memory of a streaming precompute", args) + [
        f"One train split per row, each precomputed by a fresh process. Map size {args.map_size}. Peak RSS is the"
        " kernel's high-water mark (VmHWM) of the process; the RSS before is after imports, model and dataset"
        " set-up. A memory limit is a cgroup the process ran in: the cache it wrote can be larger than the memory it"
        " was allowed. Peak - before = the working memory of one batch"
        f" ({PRECOMPUTE_BATCH} images through forward, backward and every layer's map) + about two shards (the shard"
        " being assembled and its joined copy): it grows with the shard size, not with the number of images.",
        "",
        "| images | shard | cache GiB | memory limit GiB | RSS before MiB | peak RSS MiB | peak - before MiB | img/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in streaming:
        limit = f"{r['memory_limit_gib']:g}" if r["memory_limit_gib"] else "none"
        lines.append(f"| {r['images']} | {r['shard_size']} | {r['cache_gib']:.2f} | {limit} | {r['rss_before_mib']:.0f} | "
                     f"{r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] - r['rss_before_mib']:.0f} | "
                     f"{r['images'] / r['seconds']:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def reading_markdown(args, reading: list[dict]) -> str:
    lines = header("CGMA cache: memmapped reads vs GAN consumption", args) + [
        f"{args.read_images} cached train samples; the pipeline's train dataloader (shuffled, batch 32, no workers)."
        " First pass after dropping the page cache where the kernel allows it (root), then warm. GAN: samples/s"
        f" inside {args.gan_steps} LSFT training steps of batch 32 (D and G updates; 2 warm-up steps not timed),"
        " on this CPU.",
        "",
        "| GAN config | map size | read samples/s (first pass) | read samples/s (warm) | GAN samples/s | read / GAN |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in reading:
        first = f"{r['read_first']:.0f}" + (" (cold)" if r["first_is_cold"] else "")
        lines.append(f"| gan={r['gan']} | {r['map_size']} | {first} | {r['read_warm']:.0f} | {r['gan_consumes']:.1f} | "
                     f"{min(r['read_first'], r['read_warm']) / r['gan_consumes']:.0f}x |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="all", choices=["all", "precompute"])
    parser.add_argument("--images", type=int, nargs="+", default=[4096, 16384, 65536])
    parser.add_argument("--size", type=int, default=64, help="classifier input size")
    parser.add_argument("--map-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=512, help="images per cache shard")
    parser.add_argument("--other-shard-sizes", type=int, nargs="*", default=[64, 2048],
                        help="also run the first image count with these shard sizes")
    parser.add_argument("--memory-limit", type=float, default=2.0, help="GiB; 0 for none")
    parser.add_argument("--read-images", type=int, default=8192)
    parser.add_argument("--gan-steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--cache", help="precompute mode: where to write")
    parser.add_argument("--parts", nargs="+", choices=["memory", "reading"], default=["memory", "reading"])
    parser.add_argument("--out-dir", default=str(Path(__file__).parent), help="where the tables are written")
    args = parser.parse_args()
    if args.mode == "precompute":
        args.images = args.images[0]
        return precompute_child(args)

    parts = {"memory": (measure_streaming, memory_markdown), "reading": (measure_reading, reading_markdown)}
    workdir = Path(tempfile.mkdtemp(prefix="cgmagan-bench-"))
    try:
        for part in args.parts:
            measure, markdown = parts[part]
            table = markdown(args, measure(args, workdir))
            Path(args.out_dir, f"cgma_cache_{part}.md").write_text(table)
            print(table)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
