"""Classifier backbones: the paper's torchvision networks and small CPU-sized variants.

Every builder takes ``in_channels`` and ``num_classes`` and returns an untrained network;
``pretrained=True`` loads torchvision's ImageNet weights only from the local torch cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn
from torchvision.models.mobilenetv2 import MobileNetV2
from torchvision.models.resnet import BasicBlock

from cgmagan.errors import ConfigError, UserError, WeightsNotFoundError


def _adapt_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """Same conv with ``in_channels`` inputs; pretrained RGB weights are averaged for grey."""
    if conv.in_channels == in_channels:
        return conv
    new = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
    )
    with torch.no_grad():
        new.weight.copy_(conv.weight.mean(1, keepdim=True).expand_as(new.weight))
    return new


def _torchvision(name: str, pretrained: bool) -> nn.Module:
    builder = getattr(torchvision.models, name)
    if not pretrained:
        return builder(weights=None)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not cached.is_file():
        raise WeightsNotFoundError(
            f"backbone.pretrained=true needs torchvision's {name} ImageNet weights at {cached}; "
            "they are not there and nothing is downloaded at run time. Copy the file there "
            "(or set TORCH_HOME), or use backbone.pretrained=false."
        )
    return builder(weights=weights)


def vgg16(in_channels: int, num_classes: int, pretrained: bool = False) -> nn.Module:
    net = _torchvision("vgg16", pretrained)
    net.features[0] = _adapt_first_conv(net.features[0], in_channels)
    net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, num_classes)
    return net


def _resnet(name: str, in_channels: int, num_classes: int, pretrained: bool) -> nn.Module:
    net = _torchvision(name, pretrained)
    net.conv1 = _adapt_first_conv(net.conv1, in_channels)
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return net


def resnet50(in_channels: int, num_classes: int, pretrained: bool = False) -> nn.Module:
    return _resnet("resnet50", in_channels, num_classes, pretrained)


def resnet18(in_channels: int, num_classes: int, pretrained: bool = False) -> nn.Module:
    return _resnet("resnet18", in_channels, num_classes, pretrained)


def _mobilenet(name: str, in_channels: int, num_classes: int, pretrained: bool) -> nn.Module:
    net = _torchvision(name, pretrained)
    net.features[0][0] = _adapt_first_conv(net.features[0][0], in_channels)
    net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, num_classes)
    return net


def mobilenet_v2(in_channels: int, num_classes: int, pretrained: bool = False) -> nn.Module:
    return _mobilenet("mobilenet_v2", in_channels, num_classes, pretrained)


def mobilenet_v3_small(in_channels: int, num_classes: int, pretrained: bool = False) -> nn.Module:
    return _mobilenet("mobilenet_v3_small", in_channels, num_classes, pretrained)


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallVGG(nn.Module):
    """VGG-style stacks of 3x3 conv-BN-ReLU with max pooling; input/8 at the last conv."""

    def __init__(self, in_channels: int, num_classes: int, widths=(16, 32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i, w in enumerate(widths):
            layers += _conv_bn_relu(cin, w) + _conv_bn_relu(w, w)
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SmallResNet(nn.Module):
    """CIFAR-style ResNet from torchvision's BasicBlock: stride-1 stem, stages at /1 /2 /4 /8."""

    def __init__(self, in_channels: int, num_classes: int, widths=(16, 32, 64, 128), blocks: int = 1):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, widths[0]))
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or cin != w:
                down = nn.Sequential(nn.Conv2d(cin, w, 1, stride, bias=False), nn.BatchNorm2d(w))
            stage = [BasicBlock(cin, w, stride, down)] + [BasicBlock(w, w) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def small_vgg(in_channels: int, num_classes: int, pretrained: bool = False) -> nn.Module:
    _no_pretrained("small_vgg", pretrained)
    return SmallVGG(in_channels, num_classes)


def small_resnet(in_channels: int, num_classes: int, pretrained: bool = False) -> nn.Module:
    _no_pretrained("small_resnet", pretrained)
    return SmallResNet(in_channels, num_classes)


def small_mobilenet(in_channels: int, num_classes: int, pretrained: bool = False) -> nn.Module:
    """torchvision's MobileNetV2 with a short inverted-residual schedule: input/8 at the end."""
    _no_pretrained("small_mobilenet", pretrained)
    # t (expansion), c (channels), n (repeats), s (stride)
    setting = [[1, 16, 1, 1], [4, 24, 2, 2], [4, 32, 2, 2], [4, 64, 2, 2]]
    net = MobileNetV2(num_classes=num_classes, width_mult=1.0, inverted_residual_setting=setting, dropout=0.1)
    stem = net.features[0][0]
    net.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, 1, 1, bias=False)
    last = net.features[-1]  # 1x1 conv to 1280 channels: shrink it for a CPU-sized net
    net.features[-1] = type(last)(setting[-1][1], 256, kernel_size=1, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6)
    net.classifier[-1] = nn.Linear(256, num_classes)
    return net


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ConfigError(f"{name} has no pretrained weights; set backbone.pretrained=false")


BACKBONES = {
    f.__name__: f
    for f in (vgg16, resnet50, mobilenet_v2, resnet18, mobilenet_v3_small, small_vgg, small_resnet, small_mobilenet)
}


def build_backbone(name: str, in_channels: int, num_classes: int, pretrained: bool = False) -> nn.Module:
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](in_channels, num_classes, pretrained)


def build_net(backbone: dict, in_channels: int, num_classes: int) -> nn.Module:
    """The backbone config's ``_target_`` called with its other keys (``input_size`` and
    ``target_layer`` aside: the data's and the CGMA stage's business) plus the data's channels and
    classes: any factory with that signature works."""
    kwargs = {k: v for k, v in backbone.items() if k not in ("input_size", "target_layer")}
    try:
        return instantiate(kwargs, in_channels=in_channels, num_classes=num_classes)
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):
            raise err.__cause__ from None  # its message already says what to change
        raise
