"""Models: ``build_model(ModelConfig)`` -> the dual-stream three-branch network."""

from __future__ import annotations

import logging

from msmine.errors import UserError
from msmine.train.anchors import ANCHOR_SPACINGS
from msmine.train.config import ModelConfig
from msmine.train.models.dual_stream import BRANCHES, NORMALIZATION, DualStreamModel, is_lite
from msmine.train.models.efficientnet_lite import LITE_VARIANTS

__all__ = ["BACKBONES", "BRANCHES", "NORMALIZATION", "DualStreamModel", "build_model", "parameter_groups"]

log = logging.getLogger(__name__)

BACKBONES = ("small", "vgg16", *LITE_VARIANTS)
CLS_LOSSES = ("ce", "focal")
BOX_LOSSES = ("smooth_l1", "giou")
SEG_LOSSES = ("ce", "ohem", "wce")


def _check(cfg: ModelConfig) -> None:
    if cfg.task not in ("detect", "segment"):
        raise UserError(f"model.task must be 'detect' or 'segment', got {cfg.task!r}")
    if cfg.backbone not in BACKBONES:
        raise UserError(f"model.backbone must be one of {', '.join(BACKBONES)}, got {cfg.backbone!r}")
    if len(cfg.input_size) != 2 or min(cfg.input_size) < 32:
        raise UserError(f"model.input_size must be [H, W] with both >= 32, got {list(cfg.input_size)}")
    if cfg.num_classes < 1 or len(cfg.class_names) != cfg.num_classes:
        raise UserError(f"model.class_names ({len(cfg.class_names)}) must list model.num_classes "
                        f"({cfg.num_classes}) names")
    if cfg.anchor_spacing not in ANCHOR_SPACINGS:
        raise UserError(f"model.anchor_spacing must be one of {', '.join(ANCHOR_SPACINGS)}, got {cfg.anchor_spacing!r}")
    if cfg.scales_per_octave < 1:
        raise UserError(f"model.scales_per_octave must be >= 1, got {cfg.scales_per_octave}")
    if cfg.cls_loss not in CLS_LOSSES:
        raise UserError(f"model.cls_loss must be one of {', '.join(CLS_LOSSES)}, got {cfg.cls_loss!r}")
    if cfg.box_loss not in BOX_LOSSES:
        raise UserError(f"model.box_loss must be one of {', '.join(BOX_LOSSES)}, got {cfg.box_loss!r}")
    if cfg.seg_loss not in SEG_LOSSES:
        raise UserError(f"model.seg_loss must be one of {', '.join(SEG_LOSSES)}, got {cfg.seg_loss!r}")
    weights = tuple(cfg.seg_class_weights or ())
    if weights and (len(weights) != cfg.num_classes or min(weights) <= 0):
        raise UserError(f"model.seg_class_weights must be {cfg.num_classes} positive numbers (one per class), "
                        f"got {list(weights)}")
    if cfg.decoder_channels < 8:
        raise UserError(f"model.decoder_channels must be >= 8, got {cfg.decoder_channels}")
    if cfg.freeze_stages and not is_lite(cfg.backbone):
        raise UserError("model.freeze_stages is only supported with the lite0/lite1/lite2 backbones")


def build_model(cfg: ModelConfig) -> DualStreamModel:
    _check(cfg)
    model = DualStreamModel(cfg)
    if cfg.pretrained:
        if cfg.backbone == "vgg16":
            from msmine.train.models.pretrained import load_vgg16_imagenet

            load_vgg16_imagenet(model, cfg.pretrained)
        elif is_lite(cfg.backbone):
            from msmine.train.models.backbone_checkpoint import (
                load_backbone_checkpoint,
                read_backbone_checkpoint,
            )
            from msmine.train.models.pretrained import load_lite_imagenet

            backbone = read_backbone_checkpoint(cfg.pretrained)  # msmine pretrain's pretrain.pt
            if backbone is not None:
                load_backbone_checkpoint(model, backbone, cfg.pretrained)
            else:
                load_lite_imagenet(model, cfg.backbone, cfg.pretrained)
        else:
            raise UserError("model.pretrained is only supported with model.backbone=vgg16 or lite0/lite1/lite2")
    return model


def parameter_groups(model, backbone_lr_mult: float = 1.0) -> list[dict]:
    """Optimizer parameter groups with an ``lr_scale`` each (backbone vs the rest); a model without
    :meth:`DualStreamModel.parameter_groups` gets one group."""
    if hasattr(model, "parameter_groups"):
        return model.parameter_groups(backbone_lr_mult)
    return [{"name": "all", "params": [p for p in model.parameters() if p.requires_grad], "lr_scale": 1.0}]
