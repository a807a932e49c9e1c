"""An emulated accelerator on a CPU-only machine, for tests that check where each stage computes.

A tensor on the emulated device (:class:`OnDevice`) holds its values in an ordinary CPU tensor but
reports the device ``lazy:0``; every aten op that touches one, forward and backward passes alike,
goes through :func:`_dispatch`, which checks the op as a GPU would: all its tensors on one
device, except CPU scalars (0-dim), which CUDA kernels take, copies between devices, and index
tensors of advanced indexing. An op that meets a CPU tensor raises :class:`MixedDevices`, as CUDA
raises "Expected all tensors to be on the same device"; otherwise it runs on the held CPU tensors,
so whole stages run and compute what a CPU run computes. Inside :class:`EmulatedDevice` the tensor
factories (``torch.zeros(..., device=x.device)``, ``.to(device)``) make device tensors.

``lazy`` is only a name here: it is a device that PyTorch's autograd engine runs on the calling
thread (a ``cuda`` device would need a GPU worker thread); PyTorch's lazy backend itself is used
only by ``torch.tensor(data, device=...)``, which copies below the dispatch mode.
"""

from __future__ import annotations

import copy
import functools

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_utilities.core.apply_func import apply_to_collection
from omegaconf import DictConfig, open_dict
from pytorch_lightning.accelerators import CPUAccelerator
from torch.utils._python_dispatch import TorchDispatchMode

DEVICE = torch.device("lazy", 0)
_aten = torch.ops.aten
# ops that take tensors of two devices on a GPU too: copies between devices, and advanced indexing,
# whose index tensors may stay on the CPU
_CROSS_DEVICE = {_aten._to_copy.default, _aten.copy_.default, _aten.index.Tensor, _aten.index_put_.default,
                 _aten.index_put.default, _aten._index_put_impl_.default}  # fmt: skip


class MixedDevices(RuntimeError):
    """An op met tensors of two devices: on a GPU, CUDA's "Expected all tensors to be on the same device"."""


class OnDevice(torch.Tensor):
    """A tensor on the emulated device: ``elem`` holds its values on the CPU."""

    elem: torch.Tensor

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        out = torch.Tensor._make_wrapper_subclass(
            cls, elem.size(), strides=elem.stride(), storage_offset=elem.storage_offset(), dtype=elem.dtype,
            layout=elem.layout, device=DEVICE, requires_grad=elem.requires_grad,
        )  # fmt: skip
        out.elem = elem
        return out

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs or {})

    def __repr__(self) -> str:
        return f"OnDevice({self.elem!r})"

    def tolist(self):  # a device tensor copies to the host for it, as on a GPU
        return self.elem.tolist()

    def __format__(self, spec: str) -> str:  # f"{loss:.3f}" of a scalar copies it to the host, as on a GPU
        return self.elem.__format__(spec)

    def numpy(self, *, force: bool = False):
        raise TypeError(f"can't convert {DEVICE} device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
                        "to host memory first.")  # fmt: skip


def _map(fn, args, kwargs):
    """``fn`` applied to each tensor of an aten op's arguments (lists of tensors nest no deeper)."""

    def one(a):
        if isinstance(a, torch.Tensor):
            return fn(a)
        if isinstance(a, list | tuple) and any(isinstance(b, torch.Tensor) for b in a):
            return type(a)(fn(b) if isinstance(b, torch.Tensor) else b for b in a)
        return a

    return [one(a) for a in args], {k: one(v) for k, v in kwargs.items()}


def _tensors(args, kwargs) -> list[torch.Tensor]:
    found = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            found.append(a)
        elif isinstance(a, list | tuple):
            found += [b for b in a if isinstance(b, torch.Tensor)]
    return found


def _adopt(t: torch.Tensor) -> torch.Tensor:
    """A tensor of PyTorch's own lazy backend (made by ``torch.tensor(data, device=...)``) becomes an emulated one."""
    return OnDevice(t.cpu()) if not isinstance(t, OnDevice) and t.device == DEVICE else t


def _wrap(out):
    if isinstance(out, torch.Tensor):
        return out if isinstance(out, OnDevice) else OnDevice(out)
    if isinstance(out, list | tuple):
        return type(out)(_wrap(o) for o in out)
    return out


def _dispatch(func, args, kwargs):
    tensors = _tensors(args, kwargs)
    if any(t.device == DEVICE and not isinstance(t, OnDevice) for t in tensors):
        args, kwargs = _map(_adopt, args, kwargs)
        tensors = _tensors(args, kwargs)
    on_device = any(isinstance(t, OnDevice) for t in tensors)
    device = kwargs.get("device")
    made_there = device is not None and torch.device(device) == DEVICE
    if not on_device and not made_there:
        return func(*args, **kwargs)
    EmulatedDevice.ops += 1
    if on_device and func not in _CROSS_DEVICE:
        host = [t for t in tensors if not isinstance(t, OnDevice) and t.dim() > 0]
        if host:
            raise MixedDevices(f"{func} mixes tensors on {DEVICE} and on the cpu (shape {tuple(host[0].shape)})")
    inner_args, inner_kwargs = _map(lambda t: t.elem if isinstance(t, OnDevice) else t, args, kwargs)
    if made_there:
        inner_kwargs["device"] = torch.device("cpu")
    elif func is _aten._to_copy.default:  # .to(dtype) stays on the device; .to("cpu") leaves it
        out = func(*inner_args, **inner_kwargs)
        return out if device is not None else OnDevice(out)
    out = func(*inner_args, **inner_kwargs)
    if func is _aten._local_scalar_dense.default:  # .item()
        return out
    returns = func._schema.returns
    if len(returns) == 1 and returns[0].alias_info is not None and returns[0].alias_info.is_write:
        # an in-place or out= op returns the very tensor it wrote to
        for i, arg in enumerate(func._schema.arguments):
            if arg.alias_info is not None and arg.alias_info.is_write:
                return args[i] if i < len(args) else kwargs[arg.name]
    return _wrap(out)


@functools.cache
def _start_lazy_backend() -> None:
    """For ``torch.tensor(data, device=DEVICE)`` (see :func:`_adopt`); once per process."""
    import torch._lazy.ts_backend

    torch._lazy.ts_backend.init()


class EmulatedDevice(TorchDispatchMode):
    """While active, tensor factories given the emulated device make :class:`OnDevice` tensors,
    and every op is checked by :func:`_dispatch`."""

    ops = 0  # ops run on the emulated device (class-wide: OnDevice dispatches without the mode too)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs or {})

    def __enter__(self):
        _start_lazy_backend()
        return super().__enter__()


class HostCheckpointIO(TorchCheckpointIO):
    """Checkpoints written from host copies (as XLA's are): an emulated tensor has no storage to pickle."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        super().save_checkpoint(apply_to_collection(checkpoint, torch.Tensor, lambda t: t.cpu()), path, storage_options)


class EmulatedAccelerator(CPUAccelerator):
    def setup_device(self, device: torch.device) -> None:
        pass

    @staticmethod
    def get_parallel_devices(devices) -> list[torch.device]:
        return [DEVICE]


def on_emulated_device(cfg: DictConfig) -> DictConfig:
    """A copy of the run's config whose trainer computes on the emulated device (run it inside
    :class:`EmulatedDevice`). Lightning's inference mode is off: an inference tensor cannot be
    wrapped; ``no_grad`` runs the same computations."""
    emulated = copy.deepcopy(cfg)
    with open_dict(emulated):
        emulated.trainer.accelerator = "auto"
        emulated.trainer.inference_mode = False
        emulated.trainer.strategy = {"_target_": "pytorch_lightning.strategies.SingleDeviceStrategy", "device": str(DEVICE),
                                     "accelerator": {"_target_": "tests.devices.EmulatedAccelerator"},
                                     "checkpoint_io": {"_target_": "tests.devices.HostCheckpointIO"}}  # fmt: skip
    return emulated
