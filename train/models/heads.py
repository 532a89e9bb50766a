"""Prediction heads: SSD multibox (class + box per anchor per level) and 1x1 segmentation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiboxHead(nn.Module):
    """One 3x3 class conv and one 3x3 box conv per level; outputs flattened level, y, x, anchor."""

    def __init__(self, channels: list[int], anchors_per_loc: int, num_classes: int):
        super().__init__()
        self.k = anchors_per_loc
        self.num_outputs = num_classes + 1
        self.cls = nn.ModuleList(nn.Conv2d(c, anchors_per_loc * self.num_outputs, 3, padding=1) for c in channels)
        self.box = nn.ModuleList(nn.Conv2d(c, anchors_per_loc * 4, 3, padding=1) for c in channels)

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
