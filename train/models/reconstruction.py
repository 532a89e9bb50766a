"""Cross-modal masked reconstruction (``msmine pretrain``): both EfficientNet-Lite streams and the
fusion, with a light decoder per target modality on the fused multi-level features.

Both images of a pair are masked with their own random patch masks (``mask_ratio`` of the patches
each, MAE-style shuffling). The visible stream, the thermal stream and the attention fusion run on
the masked images exactly as in :class:`msmine.train.models.dual_stream.DualStreamModel` (same
module names, so the weights carry over by key). Two decoders, each a top-down path to stride 4
(:class:`msmine.train.models.necks.SegmentationDecoder`) plus a 1x1 convolution and a pixel shuffle
back to full resolution:

* ``decoders.thermal`` reads the visible stream's and the fused features at strides 4/8/16/32 and
  predicts the thermal image;
* ``decoders.visible`` reads the thermal stream's and the fused features and predicts the visible
  image.

The loss is the mean squared error on the masked patches only, against per-patch normalised
targets (each patch's pixels minus their mean, over their standard deviation; MAE's
``norm_pix_loss``). A patch masked in the thermal image but visible in the visible image can only
be predicted from the other modality (through the visible stream and the fusion); one masked in
both must be inpainted from the context. Nothing asks the two streams' features to agree, so what
only one camera sees stays in its stream (see docs/training.md, "Pre-training on unlabelled pairs").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from msmine.errors import UserError
from msmine.train.models.efficientnet_lite import LITE_NORMALIZATION, LITE_VARIANTS, EfficientNetLite
from msmine.train.models.fusion import AttentionFusion
from msmine.train.models.necks import SegmentationDecoder

PRETRAIN_STRIDES = (4, 8, 16, 32)  # every level either task fuses (detect: 8/16/32, segment: 4/8/16/32)
TARGETS = {"visible": 3, "thermal": 1}  # reconstructed modality -> channels
SOURCE_OF = {"thermal": "visible", "visible": "thermal"}  # the stream each target is predicted from


class PixelDecoder(nn.Module):
    """Source-stream + fused features (finest first) -> a full-resolution image of ``out_channels``."""

    def __init__(self, in_channels: list[int], channels: int, out_channels: int, stride: int = 4):
        super().__init__()
        self.neck = SegmentationDecoder([2 * c for c in in_channels], channels)
        self.predict = nn.Conv2d(channels, out_channels * stride * stride, 1)
        self.shuffle = nn.PixelShuffle(stride)

    def forward(self, source: list[torch.Tensor], fused: list[torch.Tensor]) -> torch.Tensor:
        feats = [torch.cat([s, f], dim=1) for s, f in zip(source, fused)]
        return self.shuffle(self.predict(self.neck(feats)[0]))


def random_patch_masks(batch: int, grid: tuple[int, int], ratio: float, generator: torch.Generator) -> torch.Tensor:
    """(batch, gh, gw) bool, True = masked; exactly ``round(ratio * gh * gw)`` patches per image."""
    gh, gw = grid
    n = gh * gw
    count = int(round(ratio * n))
    count = min(max(count, 1), n - 1)  # at least one masked and one visible patch
    order = torch.rand(batch, n, generator=generator).argsort(dim=1)
    masked = torch.zeros(batch, n, dtype=torch.bool)
    masked.scatter_(1, order[:, :count], True)
    return masked.view(batch, gh, gw)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, gh, gw, patch * patch * C)."""
    n, c, h, w = images.shape
    x = images.reshape(n, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, h // patch, w // patch, patch * patch * c)


def expand_mask(mask: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, gh, gw) patch mask -> (N, 1, H, W) pixel mask."""
    return mask.repeat_interleave(patch, dim=1).repeat_interleave(patch, dim=2)[:, None]


def masked_patch_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, patch: int,
                      eps: float = 1e-6) -> torch.Tensor:
    """MSE over the masked patches against per-patch normalised targets (MAE's norm_pix_loss)."""
    pred = patchify(prediction.float(), patch)
    tgt = patchify(target.float(), patch)
    mean = tgt.mean(dim=-1, keepdim=True)
    var = tgt.var(dim=-1, keepdim=True)
    tgt = (tgt - mean) / (var + eps).sqrt()
    per_patch = ((pred - tgt) ** 2).mean(dim=-1)
    weight = mask.float()
    return (per_patch * weight).sum() / weight.sum().clamp(min=1.0)


class CrossModalMAE(nn.Module):
    """Both Lite streams + fusion at strides 4/8/16/32 + one pixel decoder per target modality."""

    def __init__(self, variant: str = "lite0", decoder_channels: int = 64, freeze_stages: int = 0):
        super().__init__()
        if variant not in LITE_VARIANTS:
            raise UserError(f"pretrain model.backbone must be one of {', '.join(LITE_VARIANTS)}, got {variant!r}")
        self.variant = variant
        self.strides = PRETRAIN_STRIDES
        self.visible_backbone = EfficientNetLite(variant, 3, 0, PRETRAIN_STRIDES, freeze_stages)
        self.thermal_backbone = EfficientNetLite(variant, 1, 0, PRETRAIN_STRIDES, freeze_stages)
        channels = self.visible_backbone.out_channels
        self.fusion = nn.ModuleList(AttentionFusion(c) for c in channels)
        self.decoders = nn.ModuleDict({m: PixelDecoder(channels, decoder_channels, c) for m, c in TARGETS.items()})
        self.normalization = LITE_NORMALIZATION
        for name, stats in LITE_NORMALIZATION.items():
            self.register_buffer(f"{name}_mean", torch.tensor(stats["mean"]).view(1, -1, 1, 1), persistent=False)
            self.register_buffer(f"{name}_std", torch.tensor(stats["std"]).view(1, -1, 1, 1), persistent=False)

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a task model takes over: both backbones and the fusion (no decoders)."""
        return {k: v.detach().cpu() for k, v in self.state_dict().items() if not k.startswith("decoders.")}

    def encode(self, visible: torch.Tensor, thermal: torch.Tensor,
               masks: dict[str, torch.Tensor] | None = None, patch: int = 32):
        """Normalise, blank the masked patches (0 after normalisation: mid-grey), run both streams and
        the fusion; -> (visible feats, thermal feats, fused feats), finest first."""
        v = (visible - self.visible_mean) / self.visible_std
        t = (thermal - self.thermal_mean) / self.thermal_std
        if masks is not None:
            v = v * (~expand_mask(masks["visible"], patch)).to(v.dtype)
            t = t * (~expand_mask(masks["thermal"], patch)).to(t.dtype)
        fv = self.visible_backbone(v)
        ft = self.thermal_backbone(t)
        ff = [fuse(a, b) for fuse, a, b in zip(self.fusion, fv, ft)]
        return fv, ft, ff

    def forward(self, visible: torch.Tensor, thermal: torch.Tensor, masks: dict[str, torch.Tensor],
                patch: int = 32) -> dict[str, torch.Tensor]:
        """Reconstructions (full resolution, per-patch normalised space) of both images."""
        fv, ft, ff = self.encode(visible, thermal, masks, patch)
        streams = {"visible": fv, "thermal": ft}
        out = {}
        for target in TARGETS:
            pred = self.decoders[target](streams[SOURCE_OF[target]], ff)
            if pred.shape[-2:] != visible.shape[-2:]:
                pred = F.interpolate(pred, size=visible.shape[-2:], mode="bilinear", align_corners=False)
            out[target] = pred
        return out

    def loss(self, visible: torch.Tensor, thermal: torch.Tensor, masks: dict[str, torch.Tensor],
             patch: int = 32) -> tuple[torch.Tensor, dict[str, float]]:
        out = self(visible, thermal, masks, patch)
        targets = {"visible": visible, "thermal": thermal}
        parts = {m: masked_patch_loss(out[m], targets[m], masks[m], patch) for m in TARGETS}
        total = parts["thermal"] + parts["visible"]
        return total, {f"{m}_loss": float(v.detach()) for m, v in parts.items()}
