"""Losses: SSD multibox (softmax CE with 3:1 hard-negative mining + smooth L1) and segmentation CE.

Each branch is trained on its own labels: visible head <- visible boxes, thermal head <- infrared
boxes, fused head <- fusion boxes. ``targets`` come from :func:`build_detection_targets`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from msmine.train.anchors import match_anchors

NEG_POS_RATIO = 3
SEG_IGNORE = 255


def build_detection_targets(
    anchors: torch.Tensor, boxes: list[torch.Tensor], labels: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: boxes [M, 4] normalised x1y1x2y2, labels [M] -> classes [N, A], deltas [N, A, 4]."""
    classes, deltas = [], []
    for b, lab in zip(boxes, labels):
        c, d = match_anchors(anchors, b.to(anchors.device), lab.to(anchors.device))
        classes.append(c)
        deltas.append(d)
    return torch.stack(classes), torch.stack(deltas)


def multibox_loss(
    logits: torch.Tensor, deltas: torch.Tensor, target_classes: torch.Tensor, target_deltas: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """SSD loss for one branch; normalised by the number of positive anchors in the batch."""
    logits = logits.float()
    deltas = deltas.float()
    positive = target_classes > 0
    num_pos = positive.sum(dim=1)  # [N]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target_classes.reshape(-1), reduction="none")
    ce = ce.view_as(target_classes)
    # Hard negatives: the highest-loss background anchors, 3 per positive (at least 3 per image).
    neg_loss = ce.detach().clone()
    neg_loss[positive] = -1.0
    order = neg_loss.argsort(dim=1, descending=True)
    rank = order.argsort(dim=1)
    num_neg = (NEG_POS_RATIO * num_pos.clamp(min=1)).clamp(max=target_classes.shape[1] - 1)
    negative = rank < num_neg[:, None]
    negative &= ~positive
    total_pos = num_pos.sum().clamp(min=1).float()
    cls_loss = ce[positive | negative].sum() / total_pos
    if positive.any():
        box_loss = F.smooth_l1_loss(deltas[positive], target_deltas[positive], reduction="sum") / total_pos
    else:
        box_loss = deltas.sum() * 0.0
    return cls_loss + box_loss, {"cls": float(cls_loss.detach()), "box": float(box_loss.detach())}


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits upsampled to the mask size; mask value 255 is ignored (padding)."""
    up = F.interpolate(logits.float(), size=masks.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(up, masks.long(), ignore_index=SEG_IGNORE)


def model_loss(outputs: dict, batch: dict, anchors: torch.Tensor, task: str, weights=(1.0, 1.0, 1.0)):
    """Sum of the three branches' losses; returns (loss, per-branch floats)."""
    total = None
    parts: dict[str, float] = {}
    for weight, branch in zip(weights, ("visible", "thermal", "fused")):
        out = outputs[branch]
        if task == "detect":
            tc, td = batch["targets"][branch]
            loss, _ = multibox_loss(out["logits"], out["deltas"], tc, td)
        else:
            loss = segmentation_loss(out["logits"], batch["mask"])
        parts[branch] = float(loss.detach())
        total = weight * loss if total is None else total + weight * loss
    return total, parts
