"""The dual-stream, three-branch model: visible and thermal extractors, attention fusion at every
pyramid level, and visible / thermal / fused heads trained jointly (each on its own labels)."""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from msmine.train.anchors import anchors_per_location, make_anchors
from msmine.train.config import ModelConfig
from msmine.train.models.backbones import build_backbone
from msmine.train.models.fusion import AttentionFusion
from msmine.train.models.heads import MultiboxHead, SegmentationHead

BRANCHES = ("visible", "thermal", "fused")

# Input normalisation applied inside forward (inputs are floats in [0, 1]).
NORMALIZATION = {
    "visible": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "thermal": {"mean": [0.5], "std": [0.25]},
}


class DualStreamModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.task = cfg.task
        self.class_names = list(cfg.class_names)
        self.input_size = (int(cfg.input_size[0]), int(cfg.input_size[1]))
        self.normalization = NORMALIZATION
        self.score_kind = cfg.score_kind  # "categorical" or "binary": how msmine.train.scoring scores this model
        self.visible_backbone = build_backbone(cfg.backbone, 3, cfg.width)
        self.thermal_backbone = build_backbone(cfg.backbone, 1, cfg.width)
        channels = self.visible_backbone.out_channels
        self.fusion = nn.ModuleList(AttentionFusion(c) for c in channels)
        for name, stats in NORMALIZATION.items():
            self.register_buffer(f"{name}_mean", torch.tensor(stats["mean"]).view(1, -1, 1, 1), persistent=False)
            self.register_buffer(f"{name}_std", torch.tensor(stats["std"]).view(1, -1, 1, 1), persistent=False)
        sizes = self.visible_backbone.level_sizes(self.input_size)
        if cfg.task == "detect":
            k = anchors_per_location(tuple(cfg.aspect_ratios))
            self.heads = nn.ModuleDict({b: MultiboxHead(channels, k, cfg.num_classes) for b in BRANCHES})
            self.level_shapes = [(h, w, k) for h, w in sizes]
            anchors = make_anchors(sizes, self.input_size, tuple(cfg.anchor_scales), tuple(cfg.aspect_ratios))
        else:
            self.heads = nn.ModuleDict({b: SegmentationHead(channels, cfg.num_classes) for b in BRANCHES})
            self.level_shapes = [(sizes[0][0], sizes[0][1], 1)]
            anchors = torch.zeros(0, 4)
        self.register_buffer("anchors", anchors, persistent=False)

    def config_dict(self) -> dict:
        return asdict(self.config)

    def forward(self, visible: torch.Tensor, thermal: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        v = (visible - self.visible_mean) / self.visible_std
        t = (thermal - self.thermal_mean) / self.thermal_std
        fv = self.visible_backbone(v)
        ft = self.thermal_backbone(t)
        ff = [fuse(a, b) for fuse, a, b in zip(self.fusion, fv, ft)]
        return {
            "visible": self.heads["visible"](fv),
            "thermal": self.heads["thermal"](ft),
            "fused": self.heads["fused"](ff),
        }
