"""GAN speed: LSFT vs GSFT training steps at equal width and equal number of SFT blocks, and the
generator's inference images/s, at both presets (gan=small, gan=paper).

    make bench            # or: python benchmarks/gan_speed.py --presets small --steps 20

A training step is the real one (CGMAGAN.training_step under a Lightning Trainer: D then G, Adam)
on a fixed batch of the preset's size, timed per batch after warm-up steps; CUDA is synchronised.
Writes benchmarks/gan_speed.md and prints it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from cgmagan.utils import cores, threads_per_job

K = 8  # CGMAs, as in the paper and both presets


class StepTimer(pl.Callback):
    """Wall time of every training batch (CUDA synchronised), warm-up batches left out."""

    def __init__(self, warmup: int):
        self.warmup, self.times, self._start = warmup, [], 0.0

    def _sync(self, pl_module):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._sync(pl_module)
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self._start)


LAYOUTS = {True: "channels-last", False: "contiguous"}  # gan.channels_last


def composed(preset: str, conditioning: str = "lsft"):
    with initialize_config_module("cgmagan.conf", version_base="1.3"):
        return compose("config", overrides=[f"gan={preset}", f"cgma.k={K}", f"conditioning={conditioning}"])


def generators(preset: str) -> dict[str, torch.nn.Module]:
    """LSFT as configured (K SFT blocks, K - 1 plain blocks between groups) and without its plain
    blocks (what is left is the condition network's cost), GSFT with the same number of SFT blocks
    and width, and GSFT at the preset's own depth."""
    lsft_cfg = composed(preset, "lsft").conditioning.generator
    lsft = instantiate(lsft_cfg)
    sft_blocks = sum(len(group) for group in lsft.groups)
    gsft = composed(preset, "gsft").conditioning.generator
    nets = {"LSFT": lsft,
            "LSFT without the plain blocks between groups": instantiate(lsft_cfg, plain_between_groups=False),
            f"GSFT, {sft_blocks} SFT blocks": instantiate(gsft, num_blocks=sft_blocks)}  # fmt: skip
    if gsft.num_blocks != sft_blocks:
        nets[f"GSFT, {gsft.num_blocks} SFT blocks (the preset's)"] = instantiate(gsft)
    return nets


def fixed_batch(batch: int, size: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"image": torch.rand(batch, 3, size, size, generator=g), "cgma": torch.rand(batch, K, size, size, generator=g),
            "target": torch.rand(batch, size, size, generator=g)}  # fmt: skip


def step_seconds(cfg, generator, device: torch.device, steps: int, warmup: int, **module) -> float:
    from cgmagan.models.gan_module import CGMAGAN

    gan = instantiate(cfg.gan.module, generator=generator, **module)
    assert isinstance(gan, CGMAGAN)
    timer = StepTimer(warmup)
    loader = DataLoader([fixed_batch(int(cfg.gan.batch_size), int(cfg.gan.map_size))] * (steps + warmup), batch_size=None)
    trainer = pl.Trainer(accelerator=device.type, devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[timer])  # fmt: skip
    trainer.fit(gan, train_dataloaders=loader)
    return sorted(timer.times)[len(timer.times) // 2]  # median: one slow step (a page fault, a GC) does not count


def _one_job(preset: str, threads: int, steps: int, warmup: int) -> float:
    torch.set_num_threads(threads)
    cfg = composed(preset)
    return step_seconds(cfg, instantiate(cfg.conditioning.generator), torch.device("cpu"), steps, warmup)


def side_by_side(preset: str, jobs: int, steps: int, warmup: int) -> tuple[int, list[float]]:
    """The LSFT step of ``jobs`` processes training at once on this CPU's cores, each on its share of
    threads (as `python -m cgmagan.reproduce small` runs its sweeps): (threads each, their step seconds)."""
    threads = threads_per_job(jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return threads, list(pool.map(_one_job, *zip(*[(preset, threads, steps, warmup)] * jobs)))


@torch.no_grad()
def inference_images_per_second(generator, batch: dict[str, torch.Tensor], device: torch.device, repeats: int) -> float:
    generator = generator.to(device).eval()
    image, cgmas = batch["image"].to(device) * 2 - 1, batch["cgma"].to(device)
    generator(image, cgmas)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        generator(image, cgmas)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(image) * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["small", "paper"])
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (default: 20 small, 4 paper)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("gan_speed.md"))
    parser.add_argument("--side-by-side", type=int, default=cores(),
                        help="on a CPU, also this many small-preset LSFT jobs at once, the cores shared (0: not)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    what = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU, {torch.get_num_threads()} threads ({platform.processor() or platform.machine()})")  # fmt: skip
    lines = [f"# GAN speed\n\n`python benchmarks/gan_speed.py` on {what}; torch {torch.__version__}, K = {K}.",
             "Training step: the median over timed steps of `CGMAGAN.training_step` (D then G) under Lightning, "
             "on a fixed batch of the preset's size. Inference: the generator alone, no gradients.\n",
             "| preset | generator | params (M) | batch | map | train step ms | samples/s | LSFT step / this step | inference img/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name in args.presets:
        cfg = composed(name)
        steps = args.steps or (20 if name == "small" else 4)
        batch = fixed_batch(int(cfg.gan.batch_size), int(cfg.gan.map_size))
        lsft_seconds = None
        for label, generator in generators(name).items():
            params = sum(p.numel() for p in generator.parameters()) / 1e6
            seconds = step_seconds(cfg, generator, device, steps, args.warmup)
            lsft_seconds = lsft_seconds or seconds
            per_second = inference_images_per_second(generator, batch, device, repeats=max(2, steps // 2))
            lines.append(f"| {name} | {label} | {params:.2f} | {cfg.gan.batch_size} | {cfg.gan.map_size} | "
                         f"{1000 * seconds:.1f} | {cfg.gan.batch_size / seconds:.1f} | {lsft_seconds / seconds:.2f}x | "
                         f"{per_second:.1f} |")  # fmt: skip
            print(lines[-1], flush=True)
        # the other memory layout, for the LSFT step only (inference is the generator's alone)
        preset, other = LAYOUTS[bool(cfg.gan.channels_last)], LAYOUTS[not cfg.gan.channels_last]
        seconds = step_seconds(cfg, instantiate(cfg.conditioning.generator), device, steps, args.warmup,
                               channels_last=not cfg.gan.channels_last)  # fmt: skip
        lines.append(f"| {name} | LSFT, {other} memory (the preset's: {preset}) | | {cfg.gan.batch_size} | "
                     f"{cfg.gan.map_size} | {1000 * seconds:.1f} | {cfg.gan.batch_size / seconds:.1f} | "
                     f"{lsft_seconds / seconds:.2f}x | |")  # fmt: skip
        print(lines[-1], flush=True)
        if name == "small" and device.type == "cpu" and args.side_by_side > 1:
            threads, times = side_by_side(name, args.side_by_side, steps, args.warmup)
            together = sum(cfg.gan.batch_size / t for t in times)
            lines.append(f"| {name} | LSFT, {len(times)} jobs at once, {threads} thread{'s' * (threads > 1)} each | | "
                         f"{cfg.gan.batch_size} | {cfg.gan.map_size} | {1000 * sum(times) / len(times):.1f} (each) | "
                         f"{together:.1f} (together) | {together * lsft_seconds / cfg.gan.batch_size:.2f}x (samples/s) | |")  # fmt: skip
            print(lines[-1], flush=True)
    lines.append("\nLSFT's trunk is K SFT blocks with K - 1 plain residual blocks between the groups (the paper's), "
                 "and its condition network runs once per CGMA (K times GSFT's, which takes the K maps at once). "
                 "Memory layout: `gan.channels_last` (G, D and their inputs in NHWC); steps of one machine drift by "
                 "tens of % within an hour, so compare rows of one run only. Jobs at once: processes each training "
                 "the small LSFT on its share of the cores (`python -m cgmagan.reproduce small` runs its sweeps so); "
                 "samples/s is their sum, against one job on every core above.")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
