"""Losses: SSD multibox and segmentation CE.

Detection classification: ``ce`` (softmax cross-entropy with 3:1 hard-negative mining, SSD) or
``focal`` (softmax focal loss over every anchor, gamma 2, foreground weight 0.25, RetinaNet);
boxes: ``smooth_l1`` (on the SSD-encoded deltas) or ``giou`` (1 - GIoU of the decoded box and its
ground truth, weight 2). Both focal and CE keep the softmax over background + classes, so the
score (``train.scoring``) reads the same probabilities whichever loss trained the head. Selected
by ``model.cls_loss`` / ``model.box_loss`` (:func:`loss_options`); defaults are SSD's.

Each branch is trained on its own labels: visible head <- visible boxes, thermal head <- infrared
boxes, fused head <- fusion boxes. ``targets`` come from :func:`build_detection_targets`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from msmine.train.anchors import decode_boxes, match_anchors

NEG_POS_RATIO = 3
SEG_IGNORE = 255
FOCAL_GAMMA = 2.0
FOCAL_ALPHA = 0.25  # weight of foreground anchors (background: 1 - alpha)
GIOU_WEIGHT = 2.0


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


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU of paired x1y1x2y2 boxes ``[..., 4]`` -> ``[...]`` in [-1, 1]."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.max(a[..., :2], b[..., :2])
    rb = torch.min(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    union = (area_a + area_b - inter).clamp(min=1e-9)
    hull = (torch.max(a[..., 2:], b[..., 2:]) - torch.min(a[..., :2], b[..., :2])).clamp(min=0).prod(dim=-1)
    return inter / union - (hull - union) / hull.clamp(min=1e-9)


def focal_loss(logits: torch.Tensor, target_classes: torch.Tensor) -> torch.Tensor:
    """Softmax focal loss per anchor ``[N, A]``: alpha_t * (1 - p_t)**gamma * -log p_t."""
    logp = F.log_softmax(logits, dim=-1)
    logp_t = logp.gather(-1, target_classes.unsqueeze(-1)).squeeze(-1)
    p_t = logp_t.exp()
    alpha = torch.where(target_classes > 0, FOCAL_ALPHA, 1.0 - FOCAL_ALPHA)
    return -alpha * (1.0 - p_t).pow(FOCAL_GAMMA) * logp_t


def multibox_loss(
    logits: torch.Tensor, deltas: torch.Tensor, target_classes: torch.Tensor, target_deltas: torch.Tensor,
    anchors: torch.Tensor | None = None, cls_loss: str = "ce", box_loss: str = "smooth_l1",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Detection loss for one branch; normalised by the number of positive anchors in the batch.

    ``anchors`` [A, 4] (cx, cy, w, h) are needed for ``box_loss="giou"``.
    """
    logits = logits.float()
    deltas = deltas.float()
    positive = target_classes > 0
    num_pos = positive.sum(dim=1)  # [N]
    total_pos = num_pos.sum().clamp(min=1).float()
    if cls_loss == "focal":
        cls = focal_loss(logits, target_classes).sum() / total_pos
    elif cls_loss == "ce":
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
        cls = ce[positive | negative].sum() / total_pos
    else:
        raise ValueError(f"cls_loss must be 'ce' or 'focal', got {cls_loss!r}")
    if not positive.any():
        box = deltas.sum() * 0.0
    elif box_loss == "smooth_l1":
        box = F.smooth_l1_loss(deltas[positive], target_deltas[positive], reduction="sum") / total_pos
    elif box_loss == "giou":
        if anchors is None:
            raise ValueError("box_loss='giou' needs the anchors")
        a = anchors.to(deltas.device).expand(deltas.shape[0], -1, -1)[positive]
        pred = decode_boxes(a, deltas[positive])
        gt = decode_boxes(a, target_deltas[positive])  # the matched ground-truth box
        box = GIOU_WEIGHT * (1.0 - giou(pred, gt)).sum() / total_pos
    else:
        raise ValueError(f"box_loss must be 'smooth_l1' or 'giou', got {box_loss!r}")
    return cls + box, {"cls": float(cls.detach()), "box": float(box.detach())}


OHEM_PROBABILITY = 0.7  # pixels predicted at least this confidently right are "easy"
OHEM_MIN_KEPT = 1 / 16  # ... but at least this share of the valid pixels is always kept (the hardest)


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, seg_loss: str = "ce",
                      class_weights=None) -> torch.Tensor:
    """Cross-entropy of logits upsampled to the mask size; mask value 255 is ignored (padding).

    ``seg_loss="wce"``: cross-entropy weighted per true class by ``class_weights`` (one per class;
    the weighted mean, as ``F.cross_entropy(weight=...)``), e.g. :func:`enet_class_weights`.

    ``seg_loss="ohem"``: online hard example mining (as in PSPNet/BiSeNet training code): the mean
    over the pixels whose true-class probability is below 0.7, and at least the hardest 1/16 of the
    valid pixels. Road scenes are mostly road and sky; plain CE lets the easy majority drown the
    rare classes (cones, bumps, curbs), which then are never predicted.
    """
    up = F.interpolate(logits.float(), size=masks.shape[-2:], mode="bilinear", align_corners=False)
    if seg_loss == "ce":
        return F.cross_entropy(up, masks.long(), ignore_index=SEG_IGNORE)
    if seg_loss == "wce":
        if class_weights is None or len(class_weights) != up.shape[1]:
            raise ValueError(f"seg_loss 'wce' needs one class weight per class ({up.shape[1]}), got {class_weights}")
        weight = torch.as_tensor(class_weights, dtype=up.dtype, device=up.device)
        return F.cross_entropy(up, masks.long(), weight=weight, ignore_index=SEG_IGNORE)
    if seg_loss != "ohem":
        raise ValueError(f"seg_loss must be 'ce', 'ohem' or 'wce', got {seg_loss!r}")
    pixel = F.cross_entropy(up, masks.long(), ignore_index=SEG_IGNORE, reduction="none").flatten()
    valid = pixel[masks.flatten() != SEG_IGNORE]
    if valid.numel() == 0:
        return pixel.sum() * 0.0
    keep = max(1, int(valid.numel() * OHEM_MIN_KEPT))
    floor = -math.log(OHEM_PROBABILITY)
    kth = torch.topk(valid, keep, sorted=False).values.min()
    threshold = torch.minimum(kth, torch.tensor(floor, device=valid.device))
    return valid[valid >= threshold].mean()


ENET_C = 1.02  # ENet (Paszke et al. 2016): w_class = 1 / ln(c + p_class), bounded by 1 / ln(c) ~ 50


def enet_class_weights(pixel_counts) -> tuple[float, ...]:
    """ENet's class weights ``1 / ln(1.02 + p)`` from per-class pixel counts (``p`` = the class's share).

    Rare classes (cones, bumps: p ~ 1e-4) get ~50, the background (p ~ 0.9) ~1.5: the loss stops
    being won by predicting road everywhere, without the unbounded weights of plain 1/p.
    """
    counts = torch.as_tensor(pixel_counts, dtype=torch.float64)
    share = counts / counts.sum().clamp(min=1.0)
    return tuple(float(w) for w in 1.0 / torch.log(ENET_C + share))


def loss_options(model) -> dict:
    """The model config's loss choices, as keyword arguments of :func:`model_loss`."""
    cfg = getattr(model, "config", None)
    return {"cls_loss": getattr(cfg, "cls_loss", "ce"), "box_loss": getattr(cfg, "box_loss", "smooth_l1"),
            "seg_loss": getattr(cfg, "seg_loss", "ce"),
            "seg_class_weights": tuple(getattr(cfg, "seg_class_weights", ()) or ()) or None}


def model_loss(outputs: dict, batch: dict, anchors: torch.Tensor, task: str, weights=(1.0, 1.0, 1.0),
               cls_loss: str = "ce", box_loss: str = "smooth_l1", seg_loss: str = "ce", seg_class_weights=None):
    """Sum of the three branches' losses; returns (loss, per-branch floats)."""
    total = None
    parts: dict[str, float] = {}
    for weight, branch in zip(weights, ("visible", "thermal", "fused")):
        out = outputs[branch]
        if task == "detect":
            tc, td = batch["targets"][branch]
            loss, _ = multibox_loss(out["logits"], out["deltas"], tc, td, anchors, cls_loss, box_loss)
        else:
            loss = segmentation_loss(out["logits"], batch["mask"], seg_loss, seg_class_weights)
        parts[branch] = float(loss.detach())
        total = weight * loss if total is None else total + weight * loss
    return total, parts
