"""The device checks themselves: the emulated accelerator (tests/devices.py) fails where a GPU
fails and computes what the CPU computes; no tensor factory in device-side code omits its device."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from cgmagan.metrics.faithfulness import deletion_insertion_auc
from tests.devices import DEVICE, EmulatedDevice, MixedDevices, OnDevice

ROOT = Path(__file__).resolve().parents[1]


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))  # fmt: skip


class TimesHostTensor(torch.autograd.Function):
    """Identity forward; its backward multiplies the gradient by a tensor made on the CPU."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * torch.ones(grad.shape[-1])


def test_a_cpu_tensor_meeting_a_device_tensor_fails_as_on_a_gpu_forward_and_backward():
    with EmulatedDevice():
        x = torch.rand(2, 3, device=DEVICE, requires_grad=True)
        with pytest.raises(MixedDevices, match="aten.add.Tensor mixes tensors on lazy:0 and on the cpu"):
            x + torch.rand(2, 3)
        with pytest.raises(MixedDevices, match="scatter"):
            torch.zeros(2, 4, dtype=torch.long, device=DEVICE).scatter_(1, torch.arange(4).expand(2, -1), 1)
        with pytest.raises(MixedDevices, match="aten.mul.Tensor"):
            TimesHostTensor.apply(x).sum().backward()
        # what CUDA takes: CPU scalars, CPU index tensors, copies either way
        y = x * torch.tensor(2.0) + 1
        assert y[torch.tensor([1, 0])].device == DEVICE and y.cpu().device.type == "cpu"
        y[torch.tensor([0])] = torch.zeros(1, 3, device=DEVICE)
        assert y.sum().item() == pytest.approx(float(x[1].detach().sum()) * 2 + 3)
    with pytest.raises(TypeError, match="can't convert lazy:0 device type tensor to numpy"):
        y.numpy()


def test_a_network_on_the_emulated_device_computes_exactly_what_it_computes_on_the_cpu():
    torch.manual_seed(0)
    net, x = small_net(), torch.rand(4, 3, 8, 8)
    on_cpu = net(x)
    on_cpu.sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    with EmulatedDevice():
        net.to(DEVICE)
        assert all(isinstance(p, OnDevice) and isinstance(p, nn.Parameter) for p in net.parameters())
        out = net(x.to(DEVICE))
        out.sum().backward()
        assert out.device == DEVICE and torch.equal(out.cpu(), on_cpu.detach())
        assert all(torch.equal(p.grad.cpu(), g) for p, g in zip(net.parameters(), grads, strict=True))
        step = torch.optim.Adam(net.parameters(), lr=0.1)
        step.step()
        assert all(p.device == DEVICE for p in net.parameters()) and net[1].running_mean.device == DEVICE


def test_deletion_and_insertion_run_on_the_device_with_the_cpus_results():
    torch.manual_seed(0)
    net = small_net().eval()
    x, maps, classes = torch.rand(3, 3, 8, 8), torch.rand(3, 8, 8), torch.tensor([0, 1, 2])
    expected = deletion_insertion_auc(net, x, maps, classes, steps=4)
    with EmulatedDevice():
        got = deletion_insertion_auc(net.to(DEVICE), x.to(DEVICE), maps.to(DEVICE), classes.to(DEVICE), steps=4)
        assert got[0].device == DEVICE
        got = [t.cpu() for t in got]
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_the_faithfulness_objective_through_the_clamped_linear_output_runs_on_the_device_with_the_cpus_results():
    """Two classifiers of other input shapes (a list of inputs), a map beyond [0, 1] before the clamp:
    the objective and the generator's gradients on the device equal the CPU's."""
    from cgmagan.archs import LSFTGenerator
    from cgmagan.data.cgma_datamodule import group_by_combination
    from cgmagan.metrics.keep import keep_terms

    torch.manual_seed(0)
    gen = LSFTGenerator(2, nf=4, cond_nf=4, cond_hidden=4, cgma_skip=True, linear_output=True)
    gen.head.start_at(torch.tensor([1.5, -0.8, 0.1]))
    gray = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    nets = [small_net().eval(), gray.eval()]
    image, cgmas = torch.rand(4, 3, 8, 8), torch.rand(4, 2, 8, 8)
    inputs = [torch.rand(3, 8, 8), torch.rand(1, 12, 12), torch.rand(3, 8, 8), torch.rand(1, 12, 12)]
    classes = torch.tensor([0, 1, 2, 0])
    groups = group_by_combination(inputs, [0, 1, 0, 1])  # as the loader collates them

    def objective(device=None):
        move = (lambda t: t.to(device)) if device else (lambda t: t)
        gen.zero_grad(set_to_none=True)
        terms = keep_terms(gen(move(image), move(cgmas)), {c: (move(r), move(x)) for c, (r, x) in groups.items()},
                           move(classes), nets)
        loss = terms.total(1.0, 0.5)
        loss.backward()
        return loss.detach().cpu(), [p.grad.cpu() for p in gen.parameters() if p.grad is not None]

    expected, grads = objective()
    assert len(grads) > 0 and any(g.abs().sum() > 0 for g in grads)
    with EmulatedDevice():
        gen.to(DEVICE)
        nets = [n.to(DEVICE) for n in nets]
        got, got_grads = objective(DEVICE)
    torch.testing.assert_close(got, expected)
    for a, b in zip(got_grads, grads, strict=True):
        torch.testing.assert_close(a, b)


# code that runs on the trainer's device: a tensor it makes must be made there
DEVICE_SIDE = ["cgmagan/cam", "cgmagan/metrics", "cgmagan/models", "cgmagan/archs", "cgmagan/explanation.py",
               "cgmagan/sanity.py", "cgmagan/methods.py", "cgmagan/linear_baseline.py"]  # fmt: skip
FACTORIES = {"arange", "zeros", "ones", "empty", "full", "tensor", "as_tensor", "linspace", "logspace", "eye", "rand",
             "randn", "randint", "randperm", "from_numpy", "scalar_tensor"}  # fmt: skip
# a factory's result may stay on the host if it is moved (.to), read back (.tolist, .item) or held
# by a module or metric that moves it with itself (register_buffer, add_state, Parameter)
HOST_OK = {"to", "tolist", "item", "register_buffer", "add_state", "Parameter"}


def unplaced_factories(source: str) -> list[int]:
    """Lines of ``torch.<factory>(...)`` calls without ``device=`` whose result is not moved, read
    back or registered in the same expression."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FACTORIES
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):  # fmt: skip
            continue
        if any(k.arg == "device" for k in node.keywords):
            continue
        up, excused = parents.get(node), False
        while up is not None and not isinstance(up, ast.stmt):
            name = up.func.attr if isinstance(up, ast.Call) and isinstance(up.func, ast.Attribute) else None
            name = up.func.id if isinstance(up, ast.Call) and isinstance(up.func, ast.Name) else name
            excused |= name in HOST_OK
            up = parents.get(up)
        if not excused:
            found.append(node.lineno)
    return found


def test_the_static_check_finds_a_factory_without_its_device():
    assert unplaced_factories("rank = torch.empty_like(o).scatter_(1, o, torch.arange(n).expand(2, -1))\n") == [1]
    assert unplaced_factories("a = torch.arange(n, device=o.device)\nb = torch.arange(3).tolist()\n") == []
    assert unplaced_factories("self.register_buffer('m', torch.tensor(mean).view(1, -1))\n") == []


def test_device_side_code_makes_every_tensor_on_its_device():
    files = [p for entry in DEVICE_SIDE for p in ((ROOT / entry).rglob("*.py") if (ROOT / entry).is_dir() else [ROOT / entry])]
    assert len(files) > 15
    found = {str(p.relative_to(ROOT)): lines for p in files if (lines := unplaced_factories(p.read_text()))}
    assert found == {}, f"torch factories without device= (or .to) in device-side code: {found}"
