"""The score (DESIGN.md section 1) in torch, on model outputs; mirrors ``selector`` (numpy).

Per prediction (an anchor in detection, a pixel in segmentation):
``I = H((p_v + p_t) / 2) - (H(p_v) + H(p_t)) / 2`` in bits, binary (foreground probability =
1 - p_background) or categorical (Jensen-Shannon divergence over the class axis). Per-level maps
average the anchors of a location; an image's score is the mean over levels of the mean within
each level (scale-balanced). The entropy baseline is the fused branch's entropy, normalised to
[0, 1] (categorical: divided by log2 C).
"""

from __future__ import annotations

import math

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
