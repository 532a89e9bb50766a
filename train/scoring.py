"""The score (DESIGN.md section 1) in torch, on model outputs; mirrors ``selector`` (numpy).

Per prediction (an anchor in detection, a pixel in segmentation):
``I = H((p_v + p_t) / 2) - (H(p_v) + H(p_t)) / 2`` in bits, binary (foreground probability =
1 - p_background) or categorical (Jensen-Shannon divergence over the class axis). Per-level maps
average the anchors of a location; an image's score is the mean over levels of the mean within
each level (scale-balanced). The entropy baseline is the fused branch's entropy, normalised to
[0, 1] (categorical: divided by log2 C).

The score variants of ``selector.variants`` (top-k, detection-level, region) are at the end
(:func:`variant_scores`), each tested equal to its numpy reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def _xlog2x(p: torch.Tensor) -> torch.Tensor:
    return p * torch.log2(p.clamp(min=1e-12))


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    return -(_xlog2x(p) + _xlog2x(1 - p))


def categorical_entropy(p: torch.Tensor) -> torch.Tensor:
    return -_xlog2x(p).sum(dim=-1)


def inconsistency(p_visible: torch.Tensor, p_thermal: torch.Tensor, kind: str = "binary") -> torch.Tensor:
    """Element-wise (binary) or per class vector on the last axis (categorical), in [0, 1] bits."""
    h = binary_entropy if kind == "binary" else categorical_entropy
    score = h(0.5 * (p_visible + p_thermal)) - 0.5 * (h(p_visible) + h(p_thermal))
    return score.clamp(0.0, 1.0)


def entropy(p: torch.Tensor, kind: str = "binary") -> torch.Tensor:
    if kind == "binary":
        return binary_entropy(p).clamp(0.0, 1.0)
    return (categorical_entropy(p) / math.log2(p.shape[-1])).clamp(0.0, 1.0)


def branch_probabilities(outputs: dict, task: str, kind: str) -> dict[str, torch.Tensor]:
    """Softmax probabilities per branch, class axis last; binary kind -> foreground probability.

    detect: [N, A, C+1] (binary: [N, A]); segment: [N, h, w, C] (binary: not meaningful, uses the
    probability of the most likely non-zero class).
    """
    probs = {}
    for branch, out in outputs.items():
        logits = out["logits"].float()
        if task == "segment":
            logits = logits.permute(0, 2, 3, 1)
        p = torch.softmax(logits, dim=-1)
        if kind == "binary":
            p = 1.0 - p[..., 0] if task == "detect" else p[..., 1:].max(dim=-1).values
        probs[branch] = p
    return probs


def branch_log_probabilities(outputs: dict, task: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per branch ``(p, log p)`` over the class axis (last), from one log-softmax.

    In this form the categorical score needs one element-wise logarithm (of the visible/thermal
    mixture) instead of four: the branches' own entropies use ``log p`` directly, which the
    log-softmax gives with one logarithm per prediction rather than per class.
    """
    out = {}
    for branch, o in outputs.items():
        logits = o["logits"].float()
        if task == "segment":
            logits = logits.permute(0, 2, 3, 1)
        logp = torch.log_softmax(logits, dim=-1)
        out[branch] = (logp.exp(), logp)
    return out


def categorical_scores(logprobs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per prediction (categorical): cross-modality inconsistency (JS, bits) and the fused branch's
    normalised entropy, from :func:`branch_log_probabilities`. Equal to :func:`inconsistency` and
    :func:`entropy` on the probabilities (tested), cheaper to run."""
    (pv, lv), (pt, lt), (pf, lf) = logprobs["visible"], logprobs["thermal"], logprobs["fused"]
    inv_ln2 = 1.0 / math.log(2.0)
    h_v = -(pv * lv).sum(dim=-1) * inv_ln2
    h_t = -(pt * lt).sum(dim=-1) * inv_ln2
    inter = (categorical_entropy(0.5 * (pv + pt)) - 0.5 * (h_v + h_t)).clamp(0.0, 1.0)
    intra = (-(pf * lf).sum(dim=-1) * (inv_ln2 / math.log2(pf.shape[-1]))).clamp(0.0, 1.0)
    return inter, intra


def level_maps(per_prediction: torch.Tensor, level_shapes: list[tuple[int, int, int]], task: str) -> list[torch.Tensor]:
    """[N, A] (detect) or [N, h, w] (segment) -> one [N, h_l, w_l] map per level (anchors averaged)."""
    if task == "segment":
        return [per_prediction]
    maps, start = [], 0
    n = per_prediction.shape[0]
    for h, w, k in level_shapes:
        count = h * w * k
        maps.append(per_prediction[:, start : start + count].reshape(n, h, w, k).mean(dim=-1))
        start += count
    return maps


def scale_balanced(maps: list[torch.Tensor]) -> torch.Tensor:
    """Mean within each level, then mean over levels -> [N]."""
    return torch.stack([m.flatten(1).mean(dim=1) for m in maps], dim=0).mean(dim=0)


@torch.no_grad()
def score_outputs(outputs: dict, level_shapes, task: str, kind: str = "categorical") -> dict:
    """Image scores from one forward pass: {"inconsistency": [N], "entropy": [N], "maps": [...]}."""
    if kind == "categorical":
        inter, intra = categorical_scores(branch_log_probabilities(outputs, task))
    else:
        probs = branch_probabilities(outputs, task, kind)
        inter = inconsistency(probs["visible"], probs["thermal"], kind)
        intra = entropy(probs["fused"], kind)
    inter_maps = level_maps(inter, level_shapes, task)
    return {
        "inconsistency": scale_balanced(inter_maps),
        "entropy": scale_balanced(level_maps(intra, level_shapes, task)),
        "maps": inter_maps,
    }


# -- score variants (selector.variants in torch) -------------------------------------------------
# Each equals its numpy reference in ``selector`` on the same inputs (float32 here, float64 there;
# tests/train_model/test_train_scoring_variants.py holds them within 1e-5). The exported graph
# computes the same functions (export.wrapper), so the device ranks by what the experiment chose.

DETECTION_NMS_IOU = 0.5  # the NMS the detection variants read the fused detections after (the device's default)


def topk_mean(maps: list[torch.Tensor], k: int, per_level: bool = False) -> torch.Tensor:
    """[N] mean of the ``k`` highest cells over all levels (``per_level``: of each level, then the
    mean over levels); ``maps``: one [N, ...] tensor per level. ``selector.topk_mean``."""
    rows = [m.flatten(1) for m in maps]
    if per_level:
        return torch.stack([r.topk(min(int(k), r.shape[1]), dim=1).values.mean(dim=1) for r in rows], 0).mean(0)
    allv = torch.cat(rows, dim=1)
    return allv.topk(min(int(k), allv.shape[1]), dim=1).values.mean(dim=1)


def region_score(values: torch.Tensor, predicted: torch.Tensor, num_classes: int,
                 class_weights: torch.Tensor | None = None, k: int | None = None) -> torch.Tensor:
    """[N] class-weighted mean over classes of the per-class mean (``k``: top-``k``) of ``values``
    [N, ...] over the pixels ``predicted`` [N, ...] (class ids) assigns to each class; a class not
    predicted counts 0. ``selector.region_score``."""
    v = values.flatten(1).float()
    onehot = torch.nn.functional.one_hot(predicted.flatten(1).long(), num_classes).to(v.dtype)  # [N, P, C]
    if k is None:
        sums = (onehot * v.unsqueeze(-1)).sum(dim=1)
        counts = onehot.sum(dim=1)
    else:
        masked = torch.where(onehot > 0, v.unsqueeze(-1), torch.full_like(onehot, -math.inf))
        top = masked.topk(min(int(k), v.shape[1]), dim=1).values  # [N, k, C]
        finite = torch.isfinite(top)
        sums = torch.where(finite, top, torch.zeros_like(top)).sum(dim=1)
        counts = finite.to(v.dtype).sum(dim=1)
    means = sums / counts.clamp(min=1.0)
    w = torch.ones(num_classes, dtype=v.dtype, device=v.device) if class_weights is None else class_weights.to(v)
    return (means * w).sum(dim=-1) / w.sum()


def _covered(lo: torch.Tensor, hi: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First / last cell (inclusive) whose centre lies in [lo, hi]; else the cell of the centre."""
    first = torch.clamp(torch.ceil(lo * n - 0.5), min=0.0)
    last = torch.clamp(torch.floor(hi * n - 0.5), max=float(n - 1))
    own = torch.clamp(torch.floor((lo + hi) * 0.5 * n), 0.0, float(n - 1))
    empty = last < first
    return torch.where(empty, own, first).long(), torch.where(empty, own, last).long()


def box_cell_values(boxes: torch.Tensor, maps: list[torch.Tensor],
                    level_sizes: list[float] | None = None) -> torch.Tensor:
    """[K] mean of the map cells each normalised box [K, 4] covers (one image's maps [h_l, w_l]);
    the mean over levels, or with ``level_sizes`` the level nearest each box's size (log scale).
    ``selector.box_cell_values``."""
    b = boxes.double().clamp(0.0, 1.0)
    per_level = []
    for m in maps:
        h, w = m.shape
        sat = torch.zeros(h + 1, w + 1, dtype=torch.float64, device=m.device)
        sat[1:, 1:] = m.double().cumsum(0).cumsum(1)
        r0, r1 = _covered(b[:, 1], b[:, 3], h)
        c0, c1 = _covered(b[:, 0], b[:, 2], w)
        total = sat[r1 + 1, c1 + 1] - sat[r0, c1 + 1] - sat[r1 + 1, c0] + sat[r0, c0]
        per_level.append(total / ((r1 - r0 + 1) * (c1 - c0 + 1)).double())
    stacked = torch.stack(per_level, 0)  # [L, K]
    if level_sizes is None:
        return stacked.mean(0)
    size = torch.sqrt(torch.clamp((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), min=1e-12))
    gap = (size.log()[None, :] - torch.tensor(level_sizes, dtype=torch.float64, device=b.device).log()[:, None]).abs()
    choice = gap.argmin(dim=0)
    return stacked[choice, torch.arange(b.shape[0], device=b.device)]


def detection_score(detections: torch.Tensor, maps: list[torch.Tensor], floor: float = 0.5,
                    class_weights: torch.Tensor | None = None, reduce: str = "sum",
                    level_sizes: list[float] | None = None) -> float:
    """One image: the class-weighted ``sum`` / ``max`` over fused detections [K, 6] (``x1 y1 x2 y2
    score class``, normalised, post-NMS) scoring >= ``floor`` of the cells their boxes cover; 0.0
    without one. ``selector.detection_score`` with ``maps=``."""
    det = detections.double().reshape(-1, 6)
    keep = det[:, 4] >= floor
    if not bool(keep.any()):
        return 0.0
    det = det[keep]
    values = box_cell_values(det[:, :4], maps, level_sizes)
    classes = det[:, 5].long()
    w = torch.ones_like(values) if class_weights is None else class_weights.double().to(values.device)[classes]
    weighted = w * values
    return float(weighted.sum() if reduce == "sum" else weighted.max())


def fused_detections(fused_out: dict, anchors: torch.Tensor, input_size, nms_iou: float = DETECTION_NMS_IOU,
                     score_threshold: float = 0.01) -> list[torch.Tensor]:
    """Per image the fused branch's post-NMS detections [K, 6] in normalised model-input coordinates."""
    from msmine.train.postprocess import detections_from_outputs

    h, w = input_size
    out = []
    for boxes, scores, labels in detections_from_outputs(fused_out, anchors, input_size, score_threshold, nms_iou):
        norm = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4) / torch.tensor([w, h, w, h], dtype=torch.float64)
        out.append(torch.cat([norm, torch.as_tensor(scores, dtype=torch.float64).reshape(-1, 1),
                              torch.as_tensor(labels, dtype=torch.float64).reshape(-1, 1)], dim=1))
    return out


@dataclass(frozen=True)
class VariantSettings:
    """The parameters of a score variant (``selector.VariantParams``'s torch-side twin)."""

    k: int = 50
    floor: float = 0.5
    class_weights: tuple[float, ...] | None = None
    level_sizes: tuple[float, ...] | None = None


def variant_scores(variant: str, maps: list[torch.Tensor], settings: VariantSettings | None = None, *,
                   predicted: torch.Tensor | None = None, num_classes: int | None = None,
                   detections: list[torch.Tensor] | None = None) -> torch.Tensor:
    """[N] image scores of one batch under ``variant`` (``selector.VARIANTS``), from the per-level
    inconsistency maps [N, h_l, w_l]; ``predicted`` (segment: fused class ids at the map's size) or
    ``detections`` (detect: per image the fused post-NMS [K, 6]) where the variant needs them."""
    s = settings or VariantSettings()
    weights = None if s.class_weights is None else torch.tensor(s.class_weights, dtype=torch.float32)
    if variant == "paper":
        return scale_balanced(maps)
    if variant in ("topk", "topk_level"):
        return topk_mean(maps, s.k, per_level=variant == "topk_level")
    if variant in ("region", "region_topk"):
        if predicted is None or num_classes is None or len(maps) != 1:
            raise ValueError(f"variant {variant!r}: expects one per-pixel map, predicted classes and num_classes")
        return region_score(maps[0], predicted, num_classes, weights, s.k if variant == "region_topk" else None)
    if variant in ("detection_sum", "detection_max"):
        if detections is None:
            raise ValueError(f"variant {variant!r}: expects the fused detections of each image")
        reduce = "sum" if variant == "detection_sum" else "max"
        cpu_maps = [m.detach().float().cpu() for m in maps]  # the detections come from NMS on the CPU
        return torch.tensor([detection_score(d.cpu(), [m[i] for m in cpu_maps], s.floor, weights, reduce,
                                             s.level_sizes) for i, d in enumerate(detections)], dtype=torch.float64)
    raise ValueError(f"variant: unknown {variant!r}")


def pooled_features(outputs: dict, level_shapes, task: str, grid: int = 4) -> torch.Tensor:
    """[N, d] a pooled summary of the fused branch's predictions for diversity (k-center, ProbCover):
    per level the foreground probability averaged over a ``grid`` x ``grid`` layout, and the mean
    class distribution (segment: the class probabilities on the grid)."""
    logits = outputs["fused"]["logits"].float()
    if task == "segment":
        p = torch.softmax(logits, dim=1)
        return torch.nn.functional.adaptive_avg_pool2d(p, grid).flatten(1)
    p = torch.softmax(logits, dim=-1)  # [N, A, C+1]
    n, parts, start = p.shape[0], [], 0
    for h, w, k in level_shapes:
        count = h * w * k
        level = p[:, start:start + count].reshape(n, h, w, k, -1)
        fg = (1.0 - level[..., 0]).mean(dim=-1)  # [N, h, w]
        parts.append(torch.nn.functional.adaptive_avg_pool2d(fg.unsqueeze(1), grid).flatten(1))
        parts.append(level[..., 1:].mean(dim=(1, 2, 3)))
        start += count
    return torch.cat(parts, dim=1)
