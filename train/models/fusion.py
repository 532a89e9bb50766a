"""Attention fusion of the visible and thermal features at one pyramid level (GAFF-like).

Intra-modality attention re-weights each stream by a spatial map computed from itself;
inter-modality attention gates each stream by a map computed from the other stream; a 1x1
convolution merges the two attended streams into the fused feature.
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionFusion(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.intra_visible = nn.Conv2d(channels, 1, 3, padding=1)
        self.intra_thermal = nn.Conv2d(channels, 1, 3, padding=1)
        self.inter_visible = nn.Conv2d(channels, 1, 3, padding=1)  # gate on visible, from thermal
        self.inter_thermal = nn.Conv2d(channels, 1, 3, padding=1)  # gate on thermal, from visible
        self.merge = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, visible: torch.Tensor, thermal: torch.Tensor) -> torch.Tensor:
        v = visible * (1 + torch.sigmoid(self.intra_visible(visible)))
        t = thermal * (1 + torch.sigmoid(self.intra_thermal(thermal)))
        v_gated = v * (1 + torch.sigmoid(self.inter_visible(t)))
        t_gated = t * (1 + torch.sigmoid(self.inter_thermal(v)))
        return self.merge(torch.cat([v_gated, t_gated], dim=1))
