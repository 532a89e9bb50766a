"""SSD anchors: generation, matching, encoding and decoding (variances 0.1, 0.2).

Anchors are ``[A, 4]`` (cx, cy, w, h) normalised to [0, 1], ordered level, y, x, anchor, so that
``A = sum(h_l * w_l * k_l)`` over the levels.
"""

from __future__ import annotations

import math

import torch

VARIANCES = (0.1, 0.2)


def level_scales(num_levels: int, smin: float, smax: float) -> list[float]:
    """Linearly spaced anchor sizes (fraction of image height), one per level plus one more."""
    if num_levels == 1:
        return [smin, smax]
    step = (smax - smin) / (num_levels - 1)
    return [smin + i * step for i in range(num_levels)] + [smax + step]


def geometric_scales(num_levels: int, smin: float, smax: float) -> list[float]:
    """Anchor base sizes from ``smin`` to ``smax`` in equal ratios (doubling per level for 5
    levels 0.04..0.64): one octave per pyramid level, as in RetinaNet/FPN."""
    if num_levels == 1:
        return [smin]
    return [smin * (smax / smin) ** (i / (num_levels - 1)) for i in range(num_levels)]


ANCHOR_SPACINGS = ("linear", "geometric")


def anchors_per_location(aspect_ratios: tuple[float, ...], spacing: str = "linear", scales_per_octave: int = 1) -> int:
    if spacing == "geometric":
        return len(aspect_ratios) * scales_per_octave
    return len(aspect_ratios) + 1


def level_shapes_wh(num_levels: int, scales: tuple[float, float], aspect_ratios: tuple[float, ...],
                    spacing: str = "linear", scales_per_octave: int = 1) -> list[list[tuple[float, float]]]:
    """Per level, the anchor (width, height) pairs as fractions of the image height.

    linear (SSD): sizes spaced linearly from smin to smax, every aspect ratio at the level's size
    plus one square at the geometric mean of this level's and the next level's size.
    geometric (RetinaNet): sizes doubling from smin to smax, every aspect ratio at
    ``scales_per_octave`` sizes ``s * 2**(i / scales_per_octave)`` within the level's octave.
    """
    if spacing not in ANCHOR_SPACINGS:
        raise ValueError(f"anchor spacing must be one of {ANCHOR_SPACINGS}, got {spacing!r}")
    out = []
    if spacing == "geometric":
        for s in geometric_scales(num_levels, *scales):
            sizes = [s * 2 ** (i / scales_per_octave) for i in range(scales_per_octave)]
            out.append([(z * math.sqrt(ar), z / math.sqrt(ar)) for z in sizes for ar in aspect_ratios])
        return out
    sizes = level_scales(num_levels, *scales)
    for level in range(num_levels):
        s, s_next = sizes[level], sizes[level + 1]
        shapes = [(s * math.sqrt(ar), s / math.sqrt(ar)) for ar in aspect_ratios]
        shapes.append((math.sqrt(s * s_next), math.sqrt(s * s_next)))
        out.append(shapes)
    return out


def make_anchors(
    feature_shapes: list[tuple[int, int]],
    input_size: tuple[int, int],
    scales: tuple[float, float],
    aspect_ratios: tuple[float, ...],
    spacing: str = "linear",
    scales_per_octave: int = 1,
) -> torch.Tensor:
    """Anchors for the given feature map shapes; sizes relative to the image height (see
    :func:`level_shapes_wh` for the two spacings)."""
    height, width = input_size
    per_level = level_shapes_wh(len(feature_shapes), scales, aspect_ratios, spacing, scales_per_octave)
    boxes = []
    for level, (fh, fw) in enumerate(feature_shapes):
        shapes = per_level[level]
        for y in range(fh):
            for x in range(fw):
                cx, cy = (x + 0.5) / fw, (y + 0.5) / fh
                for w_h, h_h in shapes:
                    boxes.append((cx, cy, w_h * height / width, h_h))
    return torch.tensor(boxes, dtype=torch.float32).clamp_(0.0, 1.0)


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], dim=-1)


def xyxy_to_cxcywh(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([(b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix [len(a), len(b)] of x1y1x2y2 boxes."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def encode_boxes(anchors: torch.Tensor, boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """Regression targets for matched boxes (normalised x1y1x2y2), SSD parameterisation."""
    b = xyxy_to_cxcywh(boxes_xyxy)
    dxy = (b[..., :2] - anchors[..., :2]) / (VARIANCES[0] * anchors[..., 2:])
    dwh = torch.log(b[..., 2:].clamp(min=1e-6) / anchors[..., 2:]) / VARIANCES[1]
    return torch.cat([dxy, dwh], dim=-1)


def decode_boxes(anchors: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Deltas ``[..., A, 4]`` -> boxes x1y1x2y2 normalised to [0, 1] (not clipped)."""
    cxcy = anchors[..., :2] + deltas[..., :2] * VARIANCES[0] * anchors[..., 2:]
    wh = anchors[..., 2:] * torch.exp((deltas[..., 2:] * VARIANCES[1]).clamp(max=8.0))
    return torch.cat([cxcy - wh / 2, cxcy + wh / 2], dim=-1)


def match_anchors(
    anchors: torch.Tensor, boxes_xyxy: torch.Tensor, labels: torch.Tensor, iou_threshold: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign every anchor a class (0 = background, 1.. = class id + 1) and a regression target.

    Every ground-truth box keeps at least its best anchor (SSD's bipartite step).
    """
    num_anchors = anchors.shape[0]
    if boxes_xyxy.numel() == 0:
        return (
            torch.zeros(num_anchors, dtype=torch.long, device=anchors.device),
            torch.zeros(num_anchors, 4, device=anchors.device),
        )
    iou = box_iou(boxes_xyxy, cxcywh_to_xyxy(anchors))  # [M, A]
    best_gt_iou, best_gt = iou.max(dim=0)
    best_anchor = iou.argmax(dim=1)
    best_gt[best_anchor] = torch.arange(boxes_xyxy.shape[0], device=anchors.device)
    best_gt_iou[best_anchor] = 1.0
    classes = labels[best_gt] + 1
    classes[best_gt_iou < iou_threshold] = 0
    targets = encode_boxes(anchors, boxes_xyxy[best_gt])
    return classes, targets
