"""The model randomisation sanity check (cgmagan/sanity.py)."""

import copy
from functools import partial

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from cgmagan.archs import PatchDiscriminator
from cgmagan.backbones import build_backbone
from cgmagan.cam import select_layers
from cgmagan.methods import select_methods
from cgmagan.models.evaluation_module import centred_gaussian
from cgmagan.models.gan_module import CGMAGAN
from cgmagan.sanity import ModelExplainer, cascade, cascade_layers, model_randomisation, rank_correlation

K, S = 4, 16


def classifier() -> nn.Module:
    torch.manual_seed(0)
    return build_backbone("small_vgg", 3, 4).eval().requires_grad_(False)


def reinitialised(model: nn.Module, names: list[str], seed: int) -> nn.Module:
    """The cascade's definition: a fresh copy, the generator seeded, ``names`` reset in order."""
    fresh = copy.deepcopy(model)
    modules = dict(fresh.named_modules())
    torch.manual_seed(seed)
    for name in names:
        modules[name].reset_parameters()
    return fresh


def test_the_cascade_randomises_the_top_layers_only_and_leaves_the_model_alone():
    model = classifier()
    layers = cascade_layers(model)
    assert isinstance(dict(model.named_modules())[layers[0]], nn.Linear)  # the logits' layer first
    assert all(isinstance(dict(model.named_modules())[n], nn.Conv2d) for n in layers[1:])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for j, step in enumerate(cascade(model, layers, seed=0), start=1):
        torch.rand(5)  # a draw between steps (as a method's own) must not change the next layer's init
        changed = {k.rsplit(".", 1)[0] for k, v in step.state_dict().items() if not torch.equal(v, before[k])}
        assert changed == set(layers[:j])
        expected = reinitialised(model, layers[:j], seed=0)  # one layer further each step = all of them from the seed
        assert all(torch.equal(a, b) for a, b in zip(expected.parameters(), step.parameters()))
    assert j == len(layers)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_rank_correlation_is_scipys_spearman_per_image_and_zero_for_a_constant_map():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 8, 8, generator=g), torch.rand(3, 8, 8, generator=g)
    b[1] = a[1] ** 2  # the same ranking
    b[2] = 0.5  # constant
    rho = rank_correlation(a, b)
    assert rho[0].item() == pytest.approx(spearmanr(a[0].flatten(), b[0].flatten()).statistic, abs=1e-5)
    assert rho[1].item() == pytest.approx(1.0, abs=1e-4) and rho[2].item() == 0.0  # (rounding to 1e-4 ties a few)


class ReadsLastCGMA(nn.Module):
    def forward(self, image, cgmas):
        return cgmas[:, -1:]


class ImageOnly(nn.Module):
    def forward(self, image, cgmas):
        return image.mean(1, keepdim=True) * 0.5 + 0.5


@pytest.mark.parametrize("generator", [ReadsLastCGMA(), ImageOnly()], ids=["reads CGMAs", "image only"])
def test_model_independent_maps_fail_and_maps_of_the_model_change(generator):
    model = classifier()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    target = select_layers(model, x[:1])[-1][0]
    adam = partial(torch.optim.Adam, lr=1e-3)
    gan = CGMAGAN(generator, PatchDiscriminator(3, ndf=8, n_layers=2), optimizer_g=adam, optimizer_d=adam).eval()
    constants = {"mean_train_target": torch.rand(S, S, generator=torch.Generator().manual_seed(2)),
                 "linear_weights": torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0]), "centred_gaussian": centred_gaussian(S, 0.25)}  # fmt: skip
    explainer = ModelExplainer(model, target, gan, {"k": K, "order": "forward", "exclude_target_layer": False}, S, constants)
    methods = select_methods(["gradcam", "gan", "last_cgma", "linear_cgma", "mean_train_target", "centred_gaussian"])
    check = model_randomisation(explainer, x, model(x).argmax(1), methods)
    assert check["layers"] == cascade_layers(model)
    assert all(len(v) == len(check["layers"]) for v in check["spearman"].values())
    for control in ("mean_train_target", "centred_gaussian"):  # they never look at the model
        assert check["spearman"][control] == pytest.approx([1.0] * len(check["layers"]), abs=1e-4) and not check["passes"][control]
    for method in ("gradcam", "last_cgma", "linear_cgma"):  # rebuilt from the randomised model
        assert check["spearman"][method][-1] < 0.9, (method, check["spearman"][method])
    if isinstance(generator, ImageOnly):  # a GAN that ignores its CGMAs explains the image, not the model
        assert check["spearman"]["gan"] == pytest.approx([1.0] * len(check["layers"]), abs=1e-4) and not check["passes"]["gan"]
    else:
        assert check["spearman"]["gan"][-1] < 0.9
    assert check["passes"]["gradcam"] == (check["spearman"]["gradcam"][-1] < check["pass_below"])
