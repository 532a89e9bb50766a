"""Feature extractors returning one feature map per pyramid level (finest first).

* ``SmallBackbone``: a few strided conv/BN/ReLU stages, fast on a CPU; levels at strides 8..128.
* ``VGG16Backbone``: the paper's SSD-VGG16 (conv4_3 with L2Norm, fc7 as a dilated conv, extra
  layers), six levels at strides 8..256. Layer indices of ``body`` follow torchvision's
  ``vgg16().features`` so ImageNet weights load by key.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def conv_bn(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def halve(size: int, times: int) -> int:
    """Spatial size after ``times`` stride-2 stages with ceil rounding."""
    for _ in range(times):
        size = math.ceil(size / 2)
    return size


class SmallBackbone(nn.Module):
    """Strided conv stages; pyramid at strides 8, 16, 32, 64, 128."""

    def __init__(self, in_channels: int, width: float = 1.0):
        super().__init__()

        def c(n: int) -> int:
            return max(8, int(round(n * width)))

        self.stem = nn.Sequential(conv_bn(in_channels, c(16), 2), conv_bn(c(16), c(32), 2))  # stride 4
        widths = [c(64), c(96), c(128), c(128), c(128)]
        stages = []
        cin = c(32)
        for i, cout in enumerate(widths):
            layers = [conv_bn(cin, cout, 2)]
            if i < 3:
                layers.append(conv_bn(cout, cout, 1))
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.out_channels = widths

    @staticmethod
    def level_sizes(input_size: tuple[int, int]) -> list[tuple[int, int]]:
        h, w = input_size
        return [(halve(h, k), halve(w, k)) for k in range(3, 8)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class L2Norm(nn.Module):
    """SSD's channel-wise L2 normalisation with a learned scale (initial 20) on conv4_3."""

    def __init__(self, channels: int, scale: float = 20.0):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=1, keepdim=True).clamp(min=1e-10) * self.weight[None, :, None, None]


# torchvision vgg16 "D" configuration; "M" = 2x2 max pool (ceil mode keeps SSD's shapes).
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
CONV4_3_INDEX = 22  # index in ``body`` of the ReLU after conv4_3


class VGG16Backbone(nn.Module):
    """SSD-VGG16: conv4_3 (L2Norm), fc7 (dilated conv6 + 1x1 conv7), extras conv8_2..conv11_2."""

    def __init__(self, in_channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        self.body = nn.Sequential(*layers)
        self.l2norm = L2Norm(512)
        self.fc7 = nn.Sequential(
            nn.MaxPool2d(3, 1, padding=1),
            nn.Conv2d(512, 1024, 3, padding=6, dilation=6),
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, 1),
            nn.ReLU(inplace=True),
        )
        extras = []
        cin = 1024
        for mid, cout in [(256, 512), (128, 256), (128, 256), (128, 256)]:
            extras.append(
                nn.Sequential(
                    nn.Conv2d(cin, mid, 1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(mid, cout, 3, stride=2, padding=1),
                    nn.ReLU(inplace=True),
                )
            )
            cin = cout
        self.extras = nn.ModuleList(extras)
        self.out_channels = [512, 1024, 512, 256, 256, 256]

    @staticmethod
    def level_sizes(input_size: tuple[int, int]) -> list[tuple[int, int]]:
        h, w = input_size
        return [(halve(h, k), halve(w, k)) for k in range(3, 9)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.body[: CONV4_3_INDEX + 1](x)
        feats = [self.l2norm(x)]
        x = self.body[CONV4_3_INDEX + 1 :](x)
        x = self.fc7(x)
        feats.append(x)
        for extra in self.extras:
            x = extra(x)
            feats.append(x)
        return feats


def build_backbone(name: str, in_channels: int, width: float = 1.0) -> nn.Module:
    if name == "small":
        return SmallBackbone(in_channels, width)
    if name == "vgg16":
        return VGG16Backbone(in_channels)
    raise ValueError(f"unknown backbone {name!r}")
