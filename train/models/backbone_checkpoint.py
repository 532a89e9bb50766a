"""Backbone-only checkpoints (``msmine pretrain``'s ``pretrain.pt``) into a model.

The checkpoint (:func:`msmine.train.checkpoint.save_backbone_checkpoint`) holds both
EfficientNet-Lite streams and the attention fusion at ``fusion_strides`` (4/8/16/32). A task model
takes the streams whole and the fusion levels it has, matched by stride (detection fuses 8/16/32,
segmentation 4/8/16/32); its necks and heads start fresh. Any other backbone, a missing level, a
missing or unexpected key or a shape mismatch is one :class:`UserError` listing them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from msmine.errors import UserError
from msmine.train.models.efficientnet_lite import EfficientNetLite

log = logging.getLogger(__name__)

STREAMS = ("visible_backbone", "thermal_backbone")


def output_strides(net: EfficientNetLite) -> list[int]:
    """The stride of each feature map a Lite feature extractor returns (finest first)."""
    return [net.stage_strides[net.stage_ends.index(i)] for i in net.out_indices]


def read_backbone_checkpoint(source) -> dict | None:
    """The checkpoint at ``source`` if it is a backbone-only one, else None (not a file, another kind)."""
    from msmine.train.checkpoint import is_backbone_checkpoint, read_checkpoint

    if not source or str(source) == "imagenet" or not Path(source).is_file():
        return None
    try:
        data = torch.load(source, map_location="cpu", weights_only=True)
    except Exception:  # not ours (or not readable as plain tensors): the caller's own loader reports it
        return None
    if not is_backbone_checkpoint(data):
        return None
    return read_checkpoint(source, allow_backbone=True)  # the key checks


def check_backbone_fits(data: dict, backbone: str, origin) -> None:
    """UserError unless a model with ``backbone`` can take this checkpoint's streams."""
    variant = data.get("backbone")
    if backbone != variant:
        raise UserError(f"{origin} holds pre-trained EfficientNet-{str(variant).capitalize()} backbones; the model "
                        f"config has model.backbone={backbone} (use --set model.backbone={variant}, or pre-train "
                        f"with --set model.backbone={backbone})")


def load_backbone_checkpoint(model, data: dict, origin) -> dict[str, int]:
    """Copy both streams and the fusion levels ``model`` has; -> tensors copied per part."""
    vis = getattr(model, "visible_backbone", None)
    if not isinstance(vis, EfficientNetLite):
        kind = getattr(getattr(model, "config", None), "backbone", type(vis).__name__)
        raise UserError(f"{origin}: pre-trained EfficientNet-{str(data['backbone']).capitalize()} backbones cannot "
                        f"initialise model.backbone={kind}")
    check_backbone_fits(data, vis.variant, origin)
    src_strides = [int(s) for s in data["fusion_strides"]]
    dst_strides = output_strides(vis)
    absent = [s for s in dst_strides if s not in src_strides]
    if absent:
        raise UserError(f"{origin} has no fusion level at stride(s) {absent} (it has {src_strides})")
    wanted = {k: v for k, v in model.state_dict().items() if k.startswith((*STREAMS, "fusion."))}
    new: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in data["model"].items():
        if key.startswith("fusion."):
            _, level, rest = key.split(".", 2)
            if not level.isdigit() or int(level) >= len(src_strides):
                unexpected.append(key)
                continue
            stride = src_strides[int(level)]
            if stride in dst_strides:  # a level this task does not fuse (stride 4 for detection) is left out
                new[f"fusion.{dst_strides.index(stride)}.{rest}"] = value
        elif key.startswith(STREAMS):
            new[key] = value
        else:
            unexpected.append(key)
    missing = sorted(set(wanted) - set(new))
    unexpected += sorted(set(new) - set(wanted))
    mismatched = [f"{k}: file {tuple(new[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in wanted.items() if k in new and new[k].shape != v.shape]
    problems = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", mismatched)):
        if items:
            more = f" (+{len(items) - 4} more)" if len(items) > 4 else ""
            problems.append(f"{len(items)} {title}: {', '.join(items[:4])}{more}")
    if problems:
        raise UserError(f"{origin} does not fit this model's backbones/fusion: " + "; ".join(problems))
    model.load_state_dict(new, strict=False)
    counts = {part: sum(1 for k in new if k.startswith(part + ".")) for part in (*STREAMS, "fusion")}
    fresh = sorted({k.split(".", 1)[0] for k in model.state_dict()} - {*STREAMS, "fusion"})
    log.info("initialised from %s (msmine pretrain, EfficientNet-%s, step %s): visible_backbone %d + "
             "thermal_backbone %d tensors, fusion at strides %s (%d tensors); starting fresh: %s", origin,
             str(data["backbone"]).capitalize(), data.get("step", "?"), counts["visible_backbone"],
             counts["thermal_backbone"], "/".join(str(s) for s in dst_strides), counts["fusion"],
             ", ".join(fresh) or "nothing")
    return counts
