"""Prediction heads: SSD multibox (class + box per anchor per level) and 1x1 segmentation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MultiboxHead(nn.Module):
    """One 3x3 class conv and one 3x3 box conv per level; outputs flattened level, y, x, anchor."""

    def __init__(self, channels: list[int], anchors_per_loc: int, num_classes: int, prior: float = 0.0):
        super().__init__()
        self.k = anchors_per_loc
        self.num_outputs = num_classes + 1
        self.cls = nn.ModuleList(nn.Conv2d(c, anchors_per_loc * self.num_outputs, 3, padding=1) for c in channels)
        self.box = nn.ModuleList(nn.Conv2d(c, anchors_per_loc * 4, 3, padding=1) for c in channels)
        if prior > 0:
            # Focal-loss start (RetinaNet): every anchor begins as background with probability
            # 1 - prior, so the many easy negatives do not swamp the first steps.
            bias = math.log((1 - prior) / prior * num_classes)
            for conv in self.cls:
                nn.init.normal_(conv.weight, std=0.01)
                b = torch.zeros(anchors_per_loc, self.num_outputs)
                b[:, 0] = bias
                conv.bias.data.copy_(b.flatten())

    def forward(self, feats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        n = feats[0].shape[0]
        logits, deltas = [], []
        for f, cls, box in zip(feats, self.cls, self.box):
            logits.append(cls(f).permute(0, 2, 3, 1).reshape(n, -1, self.num_outputs))
            deltas.append(box(f).permute(0, 2, 3, 1).reshape(n, -1, 4))
        return {"logits": torch.cat(logits, dim=1), "deltas": torch.cat(deltas, dim=1)}


class SegmentationHead(nn.Module):
    """The paper's single 1x1 convolution on the (upsampled) two finest levels' features."""

    def __init__(self, channels: list[int], num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(channels[0] + channels[1], num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        fine = feats[0]
        coarse = F.interpolate(feats[1], size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return {"logits": self.conv(torch.cat([fine, coarse], dim=1))}


class PixelHead(nn.Module):
    """The paper's one-convolution prediction branch: a 1x1 conv on the decoder's finest map."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"logits": self.conv(feats[0])}
