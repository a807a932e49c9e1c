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


def _gan_monitor(lambda_l1, faithfulness_weight) -> str:
    """The GAN's validation score that picks its best checkpoint and stops its training: agreement
    with Grad-CAM (val/l1) when it only imitates Grad-CAM, the faithfulness objective when it is
    trained on that alone, the weighted sum of both (val/objective) when trained on both."""
    if float(faithfulness_weight or 0) <= 0:
        return "val/l1"
    return "val/faithfulness" if float(lambda_l1 or 0) <= 0 else "val/objective"


OmegaConf.register_new_resolver("cgmagan_slurm_tasks", _slurm_tasks, replace=True)
OmegaConf.register_new_resolver("cgmagan_slurm_gpus", _slurm_gpus, replace=True)
OmegaConf.register_new_resolver("cgmagan_gan_monitor", _gan_monitor, replace=True)
