"""The dual-stream, three-branch model: visible and thermal extractors, attention fusion at every
pyramid level, and visible / thermal / fused heads trained jointly (each on its own labels).

Backbones:

* ``small`` / ``vgg16``: the extractors' levels feed the heads directly (SSD multibox; segmentation
  by one 1x1 conv on the two finest levels, stride 8).
* ``lite0`` / ``lite1`` / ``lite2`` (EfficientNet-Lite, ImageNet-pretrained): fusion at strides
  8/16/32 (detection) or 4/8/16/32 (segmentation), then one neck per branch - an FPN with extra
  stride-64/128 levels under the multibox head, or a top-down decoder to stride 4 under the paper's
  one-convolution prediction branch (segmentation logits at stride 4).
"""

from __future__ import annotations

import torch
from torch import nn

from msmine.train.anchors import anchors_per_location, make_anchors
from msmine.train.config import ModelConfig
from msmine.train.models.backbones import build_backbone, halve
from msmine.train.models.efficientnet_lite import LITE_NORMALIZATION, LITE_VARIANTS, EfficientNetLite
from msmine.train.models.fusion import AttentionFusion
from msmine.train.models.heads import MultiboxHead, PixelHead, SegmentationHead
from msmine.train.models.necks import DetectionFPN, SegmentationDecoder

BRANCHES = ("visible", "thermal", "fused")

# Input normalisation applied inside forward (inputs are floats in [0, 1]) for small / vgg16.
NORMALIZATION = {
    "visible": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "thermal": {"mean": [0.5], "std": [0.25]},
}

LITE_DETECT_STRIDES = (8, 16, 32)  # backbone levels fused and fed to the FPN (+ P6, P7)
LITE_DETECT_EXTRA = 2
LITE_SEGMENT_STRIDES = (4, 8, 16, 32)
FOCAL_PRIOR = 0.01


def is_lite(backbone: str) -> bool:
    return backbone in LITE_VARIANTS


def normalization_for(backbone: str) -> dict:
    """The mean/std the model applies inside forward (the exported model's metadata too)."""
    return LITE_NORMALIZATION if is_lite(backbone) else NORMALIZATION


class DualStreamModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.task = cfg.task
        self.class_names = list(cfg.class_names)
        self.input_size = (int(cfg.input_size[0]), int(cfg.input_size[1]))
        self.normalization = normalization_for(cfg.backbone)
        self.score_kind = cfg.score_kind  # "categorical" or "binary": how msmine.train.scoring scores this model
        lite = is_lite(cfg.backbone)
        if lite:
            strides = LITE_DETECT_STRIDES if cfg.task == "detect" else LITE_SEGMENT_STRIDES
            self.visible_backbone = EfficientNetLite(cfg.backbone, 3, 0, strides, cfg.freeze_stages)
            self.thermal_backbone = EfficientNetLite(cfg.backbone, 1, 0, strides, cfg.freeze_stages)
        else:
            self.visible_backbone = build_backbone(cfg.backbone, 3, cfg.width)
            self.thermal_backbone = build_backbone(cfg.backbone, 1, cfg.width)
        channels = self.visible_backbone.out_channels
        self.fusion = nn.ModuleList(AttentionFusion(c) for c in channels)
        for name, stats in self.normalization.items():
            self.register_buffer(f"{name}_mean", torch.tensor(stats["mean"]).view(1, -1, 1, 1), persistent=False)
            self.register_buffer(f"{name}_std", torch.tensor(stats["std"]).view(1, -1, 1, 1), persistent=False)
        self.necks = None
        if lite:
            d = cfg.decoder_channels
            if cfg.task == "detect":
                self.necks = nn.ModuleDict({b: DetectionFPN(channels, d, LITE_DETECT_EXTRA) for b in BRANCHES})
                log2 = [s.bit_length() - 1 for s in strides]
                log2 += [log2[-1] + i + 1 for i in range(LITE_DETECT_EXTRA)]
            else:
                self.necks = nn.ModuleDict({b: SegmentationDecoder(channels, d) for b in BRANCHES})
                log2 = [strides[0].bit_length() - 1]
            h, w = self.input_size
            sizes = [(halve(h, k), halve(w, k)) for k in log2]
            head_channels = self.necks[BRANCHES[0]].out_channels
        else:
            sizes = self.visible_backbone.level_sizes(self.input_size)
            head_channels = channels
        if cfg.task == "detect":
            k = anchors_per_location(tuple(cfg.aspect_ratios), cfg.anchor_spacing, cfg.scales_per_octave)
            prior = FOCAL_PRIOR if cfg.cls_loss == "focal" else 0.0
            self.heads = nn.ModuleDict({b: MultiboxHead(head_channels, k, cfg.num_classes, prior) for b in BRANCHES})
            self.level_shapes = [(h, w, k) for h, w in sizes]
            anchors = make_anchors(sizes, self.input_size, tuple(cfg.anchor_scales), tuple(cfg.aspect_ratios),
                                   cfg.anchor_spacing, cfg.scales_per_octave)
        else:
            if lite:
                self.heads = nn.ModuleDict({b: PixelHead(head_channels[0], cfg.num_classes) for b in BRANCHES})
            else:
                self.heads = nn.ModuleDict({b: SegmentationHead(channels, cfg.num_classes) for b in BRANCHES})
            self.level_shapes = [(sizes[0][0], sizes[0][1], 1)]
            anchors = torch.zeros(0, 4)
        self.register_buffer("anchors", anchors, persistent=False)

    def parameter_groups(self, lr_mult: float = 1.0) -> list[dict]:
        """Optimizer groups: ``backbone`` (both extractors, ``lr_scale = lr_mult``) and ``rest``
        (fusion, necks, heads; ``lr_scale = 1``). Frozen parameters are left out. A trainer sets
        ``group["lr"] = lr * group["lr_scale"]``."""
        backbone = [p for m in (self.visible_backbone, self.thermal_backbone) for p in m.parameters() if p.requires_grad]
        ids = {id(p) for m in (self.visible_backbone, self.thermal_backbone) for p in m.parameters()}
        rest = [p for p in self.parameters() if id(p) not in ids and p.requires_grad]
        return [
            {"name": "backbone", "params": backbone, "lr_scale": float(lr_mult)},
            {"name": "rest", "params": rest, "lr_scale": 1.0},
        ]

    def forward(self, visible: torch.Tensor, thermal: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        v = (visible - self.visible_mean) / self.visible_std
        t = (thermal - self.thermal_mean) / self.thermal_std
        fv = self.visible_backbone(v)
        ft = self.thermal_backbone(t)
        ff = [fuse(a, b) for fuse, a, b in zip(self.fusion, fv, ft)]
        feats = {"visible": fv, "thermal": ft, "fused": ff}
        if self.necks is not None:
            feats = {b: self.necks[b](feats[b]) for b in BRANCHES}
        return {b: self.heads[b](feats[b]) for b in BRANCHES}
