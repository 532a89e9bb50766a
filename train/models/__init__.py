"""Models: ``build_model(ModelConfig)`` -> the dual-stream three-branch network."""

from __future__ import annotations

from msmine.errors import UserError
from msmine.train.config import ModelConfig
from msmine.train.models.dual_stream import BRANCHES, NORMALIZATION, DualStreamModel

__all__ = ["BRANCHES", "NORMALIZATION", "DualStreamModel", "build_model"]


def build_model(cfg: ModelConfig) -> DualStreamModel:
    if cfg.task not in ("detect", "segment"):
        raise UserError(f"model.task must be 'detect' or 'segment', got {cfg.task!r}")
    if cfg.backbone not in ("small", "vgg16"):
        raise UserError(f"model.backbone must be 'small' or 'vgg16', got {cfg.backbone!r}")
    if len(cfg.input_size) != 2 or min(cfg.input_size) < 32:
        raise UserError(f"model.input_size must be [H, W] with both >= 32, got {list(cfg.input_size)}")
    if cfg.num_classes < 1 or len(cfg.class_names) != cfg.num_classes:
        raise UserError(f"model.class_names ({len(cfg.class_names)}) must list model.num_classes "
                        f"({cfg.num_classes}) names")
    model = DualStreamModel(cfg)
    if cfg.pretrained:
        if cfg.backbone != "vgg16":
            raise UserError("model.pretrained is only supported with model.backbone=vgg16")
        from msmine.train.models.pretrained import load_vgg16_imagenet

        load_vgg16_imagenet(model, cfg.pretrained)
    return model
