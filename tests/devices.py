"""A second device on a CPU-only machine, for tests that check where each stage computes.

PyTorch's lazy tensors (TorchScript backend) run on the CPU but report the device ``lazy:0``: with
a trainer whose root device is ``lazy:0``, a module or a batch left on the CPU is caught.
Lightning's loops run on it as far as a stage's first step, which is where the tests look.
"""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig, open_dict
from pytorch_lightning.accelerators import CPUAccelerator

LAZY = torch.device("lazy", 0)
_started = False


def start_lazy_backend() -> None:
    global _started
    if not _started:
        import torch._lazy.ts_backend

        torch._lazy.ts_backend.init()
        _started = True


class LazyAccelerator(CPUAccelerator):
    def setup_device(self, device: torch.device) -> None:
        start_lazy_backend()

    @staticmethod
    def get_parallel_devices(devices) -> list[torch.device]:
        return [LAZY]


def on_lazy_device(cfg: DictConfig) -> DictConfig:
    """A copy of the run's config whose trainer computes on the lazy device."""
    start_lazy_backend()
    lazy = copy.deepcopy(cfg)
    with open_dict(lazy):
        lazy.trainer.accelerator = "auto"
        lazy.trainer.strategy = {"_target_": "pytorch_lightning.strategies.SingleDeviceStrategy", "device": "lazy:0",
                                 "accelerator": {"_target_": "tests.devices.LazyAccelerator"}}  # fmt: skip
    return lazy
