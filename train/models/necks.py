"""Necks on the pretrained backbone's multi-stride features (one neck per branch).

* ``DetectionFPN``: feature pyramid (lateral 1x1 + top-down nearest upsampling + separable 3x3
  smoothing) over the stride-8/16/32 features, plus extra stride-64/128 levels from stride-2
  separable convolutions on P5 (RetinaNet's P6/P7): small people at night sit on P3, cars near the
  camera on P6/P7.
* ``SegmentationDecoder``: the same top-down path down to the stride-4 features (U-Net/FPN-style),
  returning one stride-4 map on which the per-branch 1x1 prediction convolution sits.

Separable convolutions keep the three per-branch necks cheap on a CPU (a 3x3 depthwise plus a 1x1
pointwise conv costs about a ninth of a full 3x3 conv at these widths).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def separable(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3x3 -> BN -> ReLU6 -> pointwise 1x1 -> BN -> ReLU6."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU6(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


def lateral(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))


class TopDown(nn.Module):
    """Laterals + top-down pathway + smoothing; inputs finest first, outputs finest first."""

    def __init__(self, in_channels: list[int], channels: int):
        super().__init__()
        self.laterals = nn.ModuleList(lateral(c, channels) for c in in_channels)
        self.smooth = nn.ModuleList(separable(channels, channels) for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        x = self.laterals[-1](feats[-1])
        outs = [self.smooth[-1](x)]
        for i in range(len(feats) - 2, -1, -1):
            lat = self.laterals[i](feats[i])
            x = lat + F.interpolate(x, size=lat.shape[-2:], mode="nearest")
            outs.append(self.smooth[i](x))
        return outs[::-1]


class DetectionFPN(nn.Module):
    """Backbone levels (finest first) -> ``len(in_channels) + extra_levels`` maps of ``channels``."""

    def __init__(self, in_channels: list[int], channels: int = 64, extra_levels: int = 2):
        super().__init__()
        self.top_down = TopDown(in_channels, channels)
        self.extras = nn.ModuleList(separable(channels, channels, stride=2) for _ in range(extra_levels))
        self.out_channels = [channels] * (len(in_channels) + extra_levels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        outs = self.top_down(feats)
        x = outs[-1]
        for extra in self.extras:
            x = extra(x)
            outs.append(x)
        return outs


class SegmentationDecoder(nn.Module):
    """Backbone levels (finest first, stride 4 first) -> one stride-4 map of ``channels``.

    The coarser decoder levels are upsampled to stride 4 and summed with the finest one (semantic
    FPN), then refined by one separable conv, so the map carries the stride-32 context and the
    stride-4 detail.
    """

    def __init__(self, in_channels: list[int], channels: int = 64):
        super().__init__()
        self.top_down = TopDown(in_channels, channels)
        self.refine = separable(channels, channels)
        self.out_channels = [channels]

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        outs = self.top_down(feats)
        size = outs[0].shape[-2:]
        x = outs[0]
        for o in outs[1:]:
            x = x + F.interpolate(o, size=size, mode="bilinear", align_corners=False)
        return [self.refine(x)]
