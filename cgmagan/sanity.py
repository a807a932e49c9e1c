"""Model parameter randomisation test (Adebayo et al. 2018, "Sanity checks for saliency maps"; the
cascading variant of Quantus's MPRT): an explanation of a model must change when the model does.

The classifier's conv and linear layers are re-initialised one after another from the logits down
(step j: the top j layers random, the rest trained). At every step the CGMAs, the target Grad-CAM,
the GAN's map and every other method's map are computed again for the same images and the same
explained classes, and compared with the trained model's maps by Spearman rank correlation per
image. A method whose correlation stays high has not looked at the model: the model-independent
baselines (mean training target, centred Gaussian) are the control and score 1 by construction.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional import spearman_corrcoef

from cgmagan.cam import cgma, multilayer_gradcam, penultimate_position, select_layers
from cgmagan.data.cgma_datamodule import to_rgb
from cgmagan.methods import ExplanationMethod

PASS_BELOW = 0.5  # mean Spearman with every layer randomised: below it, the method depends on the model


def cascade_layers(model: nn.Module) -> list[str]:
    """Names of the conv and linear layers, the logits' layer first (the randomisation order)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)][::-1]


def cascade(model: nn.Module, names: list[str], seed: int) -> Iterator[nn.Module]:
    """Step j (1, 2, ...): a copy of ``model`` with the layers ``names[:j]`` re-initialised in that order
    (PyTorch's default init, the generators seeded with ``seed`` before the first). One copy
    randomised a layer further at each step, not a fresh copy a step: the same weights, and no copy
    of the whole model per layer. The copy is changed in place: use each step before the next. The
    init draws from the generator of the model's device (a GPU's on a cluster): its state is carried
    from step to step and the caller's generators are left as they were."""
    copied = copy.deepcopy(model)
    modules = dict(copied.named_modules())
    device = next(copied.parameters()).device
    gpus = [device] if device.type == "cuda" else []

    def generators():
        return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in gpus]

    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(seed)
        state = generators()
    for name in names:
        with torch.random.fork_rng(devices=gpus):  # the caller's draws between steps leave the init's alone
            torch.set_rng_state(state[0])
            for d, gpu_state in zip(gpus, state[1]):
                torch.cuda.set_rng_state(gpu_state, d)
            modules[name].reset_parameters()
            state = generators()
        yield copied


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of each pair of maps [B, S, S] -> [B], on values rounded to 1e-4 (as
    every ranking of map pixels here: 1e-7 noise from another batch size must not reorder them); a
    constant map shares no ranking with anything and counts 0 (its correlation is undefined)."""
    a, b = a.flatten(1).double().round(decimals=4), b.flatten(1).double().round(decimals=4)
    rho = spearman_corrcoef(a.T, b.T)  # one output per column: per image
    constant = (a.amax(1) == a.amin(1)) | (b.amax(1) == b.amin(1))
    return torch.where(constant | ~torch.isfinite(rho), torch.zeros_like(rho), rho).float()


class ModelExplainer:
    """Everything the evaluator's methods read (``cgmagan.methods``), for one classifier, with the
    batch rebuilt from the classifier itself as the CGMA cache builds it."""

    def __init__(self, classifier: nn.Module, target_layer: str, gan: nn.Module, cgma_cfg: dict, map_size: int,
                 constants: dict[str, torch.Tensor]):  # fmt: skip
        self.classifier, self.target_layer, self.gan = classifier, target_layer, gan
        self.cgma_cfg, self.map_size, self.constants = cgma_cfg, map_size, constants

    def batch(self, model: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> dict[str, torch.Tensor]:
        layers = select_layers(model, x[:1], target=self.target_layer)
        cams, _ = multilayer_gradcam(model, x, layers, target=classes, size=self.map_size)
        image = F.interpolate(to_rgb(x), size=self.map_size, mode="bilinear", align_corners=False).clamp(0, 1)
        penultimate = penultimate_position([name for name, _ in layers])
        return {"input": x, "pred": classes, "image": image, "target": cams[:, -1], "penultimate": cams[:, penultimate],
                "cgma": cgma(cams, **self.cgma_cfg)}  # fmt: skip

    def maps(self, model: nn.Module, x: torch.Tensor, classes: torch.Tensor,
             methods: list[ExplanationMethod]) -> dict[str, torch.Tensor]:  # fmt: skip
        view = SimpleNamespace(classifiers=[model], target_modules=[dict(model.named_modules())[self.target_layer]],
                               gan=self.gan, **self.constants)  # fmt: skip
        batch = self.batch(model, x, classes)
        with torch.enable_grad():
            return {m.name: m.explain(view, batch, 0).detach().float() for m in methods}


def model_randomisation(explainer: ModelExplainer, x: torch.Tensor, classes: torch.Tensor,
                        methods: list[ExplanationMethod], seed: int = 0) -> dict:  # fmt: skip
    """The cascade on images ``x`` explained for ``classes``: ``{"layers": [...], "spearman":
    {method: [mean correlation after step 1, 2, ...]}}``, the layer named at step j being the
    deepest random one; ``passes`` per method: correlation with every layer random < PASS_BELOW."""
    model = explainer.classifier
    original = explainer.maps(model, x, classes, methods)
    layers = cascade_layers(model)
    spearman: dict[str, list[float]] = {m.name: [] for m in methods}
    for randomised in cascade(model, layers, seed):
        maps = explainer.maps(randomised, x, classes, methods)
        for name, heatmap in maps.items():
            spearman[name].append(float(rank_correlation(original[name], heatmap).mean()))
    return {"layers": layers, "spearman": spearman, "pass_below": PASS_BELOW,
            "passes": {name: values[-1] < PASS_BELOW for name, values in spearman.items()}}  # fmt: skip
