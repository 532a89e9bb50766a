"""The torch module that is exported: camera pair (uint8 NHWC) in, the ONNX contract's outputs out.

It feeds the model floats in [0, 1] (the model normalises inside its forward), then computes in
the graph, with the trainer's own score functions (``train.scoring``): branch probabilities
(softmax), per-prediction cross-modality inconsistency, per-level maps, the scale-balanced image
score ``inconsistency``, the fused branch's ``entropy``, and per branch the top-K candidates before
NMS (``train.anchors.decode_boxes``, best class probability excluding background, TopK).

With ``score_variant`` other than ``paper`` (one the graph can compute: ``topk``, ``topk_level``,
``region``, ``region_topk``; ``msmine.strategies.VARIANTS``' ``in_graph``) one more output follows
the contract's, ``score_variant`` [N]: the image score under that variant
(``train.scoring.variant_scores`` on the same maps), what the device ranks by. The detection
variants need the fused detections after NMS, which the device runs outside the graph, so the
device computes them from the maps (``selector.frame_score``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from msmine.model_contract import BRANCHES, VARIANT_SCORE, output_names
from msmine.train.anchors import decode_boxes
from msmine.train.scoring import (
    VariantSettings,
    branch_log_probabilities,
    branch_probabilities,
    categorical_scores,
    entropy,
    inconsistency,
    level_maps,
    scale_balanced,
    variant_scores,
)

GRAPH_VARIANTS = ("paper", "topk", "topk_level", "region", "region_topk")


class ExportWrapper(nn.Module):
    """uint8 ``visible`` [N, H, W, 3] + ``thermal`` [N, H, W, 1] -> tuple of the contract's outputs."""

    def __init__(self, model: nn.Module, max_candidates: int = 100, with_score: bool = True,
                 score_kind: str | None = None, network_dtype: torch.dtype = torch.float32,
                 score_variant: str = "paper", variant_k: int = 50):
        super().__init__()
        allowed = [v for v in GRAPH_VARIANTS if model.task == "segment" or not v.startswith("region")]
        if score_variant not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)} for a {model.task} model (the graph computes "
                             f"these), got {score_variant!r}")
        self.score_variant = score_variant if with_score else "paper"
        self.variant_k = int(variant_k)
        # anchors stay float32 whatever the network's precision (box decoding is post-processing)
        anchors = model.anchors.detach().to(torch.float32).clone() if model.task == "detect" else torch.zeros(0, 4)
        self.register_buffer("anchors", anchors, persistent=False)
        self.network_dtype = network_dtype
        # FP16: the network runs in half precision, the score subgraph stays float32
        self.model = model if network_dtype == torch.float32 else copy.deepcopy(model).to(network_dtype)
        self.task = model.task
        self.with_score = with_score
        self.score_kind = score_kind or getattr(model.config, "score_kind", "categorical")
        self.level_shapes = [tuple(s) for s in model.level_shapes]
        num_anchors = int(anchors.shape[0]) if self.task == "detect" else 0
        self.max_candidates = min(int(max_candidates), num_anchors) if self.task == "detect" else 0
        self.names = output_names(self.task, len(self.level_shapes), with_score)
        if self.score_variant != "paper":
            self.names.append(VARIANT_SCORE)

    def forward(self, visible: torch.Tensor, thermal: torch.Tensor) -> tuple[torch.Tensor, ...]:
        v = visible.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        t = thermal.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        raw = self.model(v.to(self.network_dtype), t.to(self.network_dtype))
        if self.network_dtype != torch.float32:
            raw = {b: {k: x.to(torch.float32) for k, x in out.items()} for b, out in raw.items()}
        outputs: list[torch.Tensor] = []
        if self.with_score and self.score_kind == "categorical":
            # One log-softmax per branch gives both the probabilities and their logarithms.
            logprobs = branch_log_probabilities(raw, self.task)
            probs = {b: p for b, (p, _) in logprobs.items()}
        else:
            probs = branch_probabilities(raw, self.task, "categorical")  # class axis last, background first
        if self.with_score:
            if self.score_kind == "categorical":
                inter, intra = categorical_scores(logprobs)
            else:
                score_probs = branch_probabilities(raw, self.task, "binary")
                inter = inconsistency(score_probs["visible"], score_probs["thermal"], self.score_kind)
                intra = entropy(score_probs["fused"], self.score_kind)
            maps = level_maps(inter, self.level_shapes, self.task)
            outputs += [scale_balanced(maps), scale_balanced(level_maps(intra, self.level_shapes, self.task))]
            outputs += maps
        for branch in BRANCHES:
            if self.task == "detect":
                outputs.append(self._candidates(probs[branch], raw[branch]["deltas"]))
            else:
                outputs.append(raw[branch]["logits"].argmax(dim=1))
        if self.score_variant != "paper":
            settings = VariantSettings(k=self.variant_k)
            if self.task == "segment":
                logits = raw["fused"]["logits"]
                outputs.append(variant_scores(self.score_variant, maps, settings, predicted=logits.argmax(dim=1),
                                              num_classes=int(logits.shape[1])))
            else:
                outputs.append(variant_scores(self.score_variant, maps, settings))
        return tuple(outputs)

    def _candidates(self, probs: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        """[N, A, C+1] probabilities + [N, A, 4] deltas -> [N, K, 6] x1 y1 x2 y2 score class."""
        best, cls = probs[..., 1:].max(dim=-1)
        top, idx = torch.topk(best, self.max_candidates, dim=1)
        boxes = decode_boxes(self.anchors, deltas)
        boxes = torch.gather(boxes, 1, idx.unsqueeze(-1).expand(-1, -1, 4)).clamp(0.0, 1.0)
        classes = torch.gather(cls, 1, idx).to(torch.float32)
        return torch.cat([boxes, top.unsqueeze(-1), classes.unsqueeze(-1)], dim=-1)

