"""The config tree (shipped as ``cgmagan.conf``). Importing it registers the resolvers its files use:
Hydra imports this package to find the configs, so they exist whenever the tree is composed."""

from omegaconf import OmegaConf


def _slurm_tasks(devices) -> int:
    """SLURM tasks per node for a trainer's ``devices``: one per device (Lightning's DDP under SLURM)."""
    if isinstance(devices, int | str) and str(devices).isdigit():
        return int(devices)
    if isinstance(devices, list | tuple) or hasattr(devices, "__len__"):
        return len(devices)
    raise ValueError(f"trainer.devices={devices!r}: give a number of devices (or a list) when running on SLURM")


def _slurm_gpus(accelerator, devices) -> int:
    """GPUs per node: one per task on a GPU trainer, none on the CPU."""
    return 0 if str(accelerator) == "cpu" else _slurm_tasks(devices)


OmegaConf.register_new_resolver("cgmagan_slurm_tasks", _slurm_tasks, replace=True)
OmegaConf.register_new_resolver("cgmagan_slurm_gpus", _slurm_gpus, replace=True)
