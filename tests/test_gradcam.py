from importlib import resources

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from cgmagan.backbones import build_backbone, build_net
from cgmagan.cam import conv_layers, multilayer_gradcam, normalize_maps, penultimate_position, select_layers
from cgmagan.cam.package import PACKAGE_CAMS, package_cam
from cgmagan.errors import ConfigError


def reference_gradcam(model, x, layer, target, size):
    """Grad-CAM of one layer written out with autograd, independently of the library."""
    acts = {}

    def keep(_module, _inputs, output):
        acts["a"] = output  # the layer's own output; the rest of the net runs on a copy,
        return output.clone()  # so an in-place ReLU downstream cannot overwrite it

    handle = layer.register_forward_hook(keep)
    logits = model(x)
    handle.remove()
    a = acts["a"]
    grad = torch.autograd.grad(logits[torch.arange(len(x)), target].sum(), a)[0]
    cam = F.relu((grad.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    out = []
    for m in cam:
        lo, hi = m.min(), m.max()
        out.append(torch.zeros_like(m) if hi <= 0 or hi - lo <= 1e-5 * hi else (m - lo) / (hi - lo))
    return torch.stack(out).detach()


class InplaceVGG(nn.Module):
    """conv -> ReLU(inplace) as in torchvision's VGG: the conv output is overwritten in place."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


@pytest.mark.parametrize("name", ["small_vgg", "small_resnet", "small_mobilenet"])
def test_every_layer_matches_an_independent_autograd_computation(name):
    model = build_backbone(name, 3, 4).eval()
    x = torch.rand(3, 3, 32, 32)
    layers = select_layers(model, x)
    cams, logits = multilayer_gradcam(model, x, layers, size=16)
    target = logits.argmax(1)
    assert cams.shape == (3, len(layers), 16, 16)
    for i, (_, layer) in enumerate(layers):
        expected = reference_gradcam(model, x, layer, target, 16)
        torch.testing.assert_close(cams[:, i], expected, atol=1e-5, rtol=1e-4)


def test_multilayer_equals_each_layer_separately_and_honours_target():
    model = build_backbone("small_resnet", 3, 4).eval()
    x = torch.rand(2, 3, 32, 32)
    layers = select_layers(model, x)
    together, _ = multilayer_gradcam(model, x, layers, target=2, size=32)
    for i, layer in enumerate(layers):
        alone, _ = multilayer_gradcam(model, x, [layer], target=2, size=32)
        torch.testing.assert_close(together[:, i], alone[:, 0])
    other, _ = multilayer_gradcam(model, x, layers, target=0, size=32)
    assert not torch.allclose(together, other)


def test_inplace_relu_after_conv_does_not_change_the_map():
    torch.manual_seed(3)
    model = InplaceVGG().eval()
    x = torch.rand(4, 3, 16, 16)
    layers = conv_layers(model, x)
    cams, logits = multilayer_gradcam(model, x, layers, size=16)
    for i, (_, layer) in enumerate(layers):
        # the reference takes a clone before the in-place ReLU runs: the pre-activation map
        torch.testing.assert_close(cams[:, i], reference_gradcam(model, x, layer, logits.argmax(1), 16), atol=1e-5, rtol=1e-4)
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU)), "inplace flags must be restored"


def test_conv_layers_forward_order_and_skips_1x1_outputs():
    model = build_backbone("mobilenet_v3_small", 3, 4).eval()
    x = torch.rand(1, 3, 64, 64)
    every = conv_layers(model, x, min_size=0)
    kept = conv_layers(model, x)
    assert len(kept) < len(every)  # the squeeze-excitation convs (1x1 output) are dropped
    assert all("fc" in n for n, _ in every if (n, _) not in kept)
    # forward order: torchvision registers features in execution order
    assert [n for n, _ in every] == [n for n, _ in conv_layers(model)]


def test_too_small_input_for_the_target_layer_is_an_error():
    model = build_backbone("resnet18", 3, 4).eval()
    with pytest.raises(ValueError, match="at least 4x4"):
        select_layers(model, torch.rand(1, 3, 32, 32))
    assert len(select_layers(model, torch.rand(1, 3, 128, 128))) == 20


def test_constant_maps_become_zero_and_others_span_zero_to_one():
    maps = torch.stack([torch.full((4, 4), 3.0), torch.zeros(4, 4), torch.arange(16.0).view(4, 4)])
    maps[0, 0, 0] += 1e-6  # within 1e-5 relative: still constant
    out = normalize_maps(maps)
    assert out[0].abs().sum() == 0 and out[1].abs().sum() == 0
    assert out[2].min() == 0 and out[2].max() == 1


MAIN_PATH_TARGETS = {
    "small_vgg": "features.24",
    "small_resnet": "stages.3.0.conv2",  # not stages.3.0.downsample.0, which runs after it
    "small_mobilenet": "features.8.0",
    "vgg16": "features.28",
    "resnet18": "layer4.1.conv2",
    "resnet50": "layer4.2.conv3",
    "mobilenet_v2": "features.18.0",
    "mobilenet_v3_small": "features.12.0",
}


@pytest.mark.parametrize("name", sorted(p.name[:-5] for p in (resources.files("cgmagan.conf") / "backbone").iterdir()
                                        if p.name.endswith(".yaml")))  # fmt: skip
def test_every_backbone_config_targets_the_last_conv_of_its_main_path(name):
    backbone = OmegaConf.to_container(OmegaConf.load(str(resources.files("cgmagan.conf") / "backbone" / f"{name}.yaml")))
    net = build_net(backbone, 3, 4).eval()
    x = torch.rand(1, 3, 32, 32) if name.startswith("small") else torch.rand(1, 3, 128, 128)
    layers = select_layers(net, x, target=backbone["target_layer"])
    assert layers[-1][0] == MAIN_PATH_TARGETS[name]
    in_order = [n for n, _ in conv_layers(net, x)]
    assert [n for n, _ in layers[:-1]] == [n for n in in_order if n != layers[-1][0]], "the others keep forward order"
    names = [n for n, _ in layers]
    penultimate = names[penultimate_position(names)]  # the penultimate_gradcam baseline's layer
    main_path = [n for n in names[:-1] if "downsample" not in n.split(".") and "shortcut" not in n.split(".")]
    assert penultimate == main_path[-1], "the conv before the target on the main path, never a shortcut projection"


def test_the_target_layer_can_be_named_and_its_map_comes_last():
    model = build_backbone("small_resnet", 3, 4).eval()
    x = torch.rand(2, 3, 32, 32)
    layers = select_layers(model, x, target="stages.2.0.conv2")
    assert layers[-1][0] == "stages.2.0.conv2" and len(layers) == len(conv_layers(model, x))
    cams, logits = multilayer_gradcam(model, x, layers, size=16)
    torch.testing.assert_close(cams[:, -1], reference_gradcam(model, x, layers[-1][1], logits.argmax(1), 16),
                               atol=1e-5, rtol=1e-4)  # fmt: skip
    with pytest.raises(ConfigError, match="names 0 of the classifier's conv layers"):
        select_layers(model, x, target="stages.9.conv")


@pytest.mark.parametrize("name", ["small_vgg", "small_resnet", "small_mobilenet"])
def test_our_gradcam_equals_the_grad_cam_packages_on_the_same_layer(name):
    model = build_backbone(name, 3, 4).eval().requires_grad_(False)  # frozen, as the pipeline's classifiers
    x = torch.rand(3, 3, 32, 32)
    layers = select_layers(model, x)
    ours, logits = multilayer_gradcam(model, x, layers[-1:], size=16)
    theirs = package_cam(PACKAGE_CAMS["gradcam"], model, layers[-1][1], x, logits.argmax(1), 16)
    torch.testing.assert_close(theirs, ours[:, 0], atol=1e-5, rtol=1e-4)
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU | nn.ReLU6) and hasattr(m, "inplace"))


def test_the_package_adapter_gives_the_packages_own_maps_where_no_resize_is_involved():
    """On a stride-1 net (layer and input the same size) the package's own call and ours agree."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()  # fmt: skip
    x = torch.rand(4, 3, 12, 12)
    classes = model(x).argmax(1)
    for name in ("gradcam_pp", "layercam", "hirescam"):
        ours = package_cam(PACKAGE_CAMS[name], model, model[2], x, classes, 12)
        with PACKAGE_CAMS[name](model=model, target_layers=[model[2]]) as cam:
            own = cam(input_tensor=x.clone().requires_grad_(True), targets=[ClassifierOutputTarget(int(c)) for c in classes])
        torch.testing.assert_close(ours, torch.from_numpy(own), atol=1e-5, rtol=1e-4)
        assert ours.shape == (4, 12, 12) and ours.amax((1, 2)).eq(1).all()


@pytest.mark.parametrize("name", ["small_vgg", "small_resnet"])
def test_batched_score_cam_equals_the_grad_cam_packages(name):
    from pytorch_grad_cam import ScoreCAM

    from cgmagan.cam.scorecam import score_cam

    torch.manual_seed(0)
    model = build_backbone(name, 3, 4).eval().requires_grad_(False)
    x = torch.rand(3, 3, 32, 32)
    layer = select_layers(model, x)[-1][1]
    classes = torch.tensor([0, 2, 3])  # not only the predicted class
    theirs = package_cam(ScoreCAM, model, layer, x, classes, 16)
    ours = score_cam(model, layer, x, classes, 16, batch_images=7)  # batches that split an image's channels
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-3)
    assert ours.amax((1, 2)).eq(1).all()  # non-trivial maps
