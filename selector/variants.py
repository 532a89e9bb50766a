"""One frame's image score by variant name, from what the device and the trainer share.

Every variant reads the per-level inconsistency maps (``[h_l, w_l]`` each; a segmentation
model's single per-pixel map is one level) and, where it needs them, the fused branch's
detections (``[K, 6]`` ``x1 y1 x2 y2 score class``, post-NMS) or predicted classes:

=================== ======================================================================
``paper``           the seed paper: mean within each level, then over levels
                    (:func:`scale_balanced_mean`)
``topk``            mean of the ``k`` highest cells over all levels (:func:`topk_mean`)
``topk_level``      mean of the ``k`` highest of each level, then over levels
``detection_sum``   class-weighted sum over detections >= ``floor`` of the cells their boxes
                    cover (:func:`detection_score`, PPAL)
``detection_max``   the same, the maximum (AL-MDN)
``region``          class-weighted mean over predicted classes of the per-class mean
                    (:func:`region_score`, Cai et al.)
``region_topk``     the same with each class's top-``k`` pixels
=================== ======================================================================

Names here are the selector's; the strategy registry (``msmine.strategies``) maps user-facing
strategy names onto them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from msmine.selector.aggregate import scale_balanced_mean, topk_mean
from msmine.selector.detection import detection_score
from msmine.selector.segmentation import region_score

VARIANTS: tuple[str, ...] = ("paper", "topk", "topk_level", "detection_sum", "detection_max", "region",
                             "region_topk")
DETECTION_VARIANTS = ("detection_sum", "detection_max")
SEGMENTATION_VARIANTS = ("region", "region_topk")


@dataclass(frozen=True)
class VariantParams:
    k: int = 50  # topk / topk_level / region_topk
    floor: float = 0.5  # detection_*: confidence floor
    class_weights: tuple[float, ...] | None = None  # detection_* / region*: one weight per class
    level_sizes: tuple[float, ...] | None = None  # detection_*: pick one level per box (else all levels)
    num_classes: int | None = None  # region*: the number of classes

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k: expected an integer >= 1, got {self.k!r}")
        if not np.isfinite(self.floor):
            raise ValueError(f"floor: expected a finite number, got {self.floor!r}")


def frame_score(variant: str, maps: Sequence, *, detections=None, predicted=None,
                params: VariantParams | None = None) -> float:
    """The image score of one frame under ``variant`` (module doc)."""
    p = params or VariantParams()
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    if variant == "paper":
        return float(scale_balanced_mean(maps, batched=False))
    if variant in ("topk", "topk_level"):
        return float(topk_mean(maps, p.k, per_level=variant == "topk_level", batched=False))
    if variant in DETECTION_VARIANTS:
        if detections is None:
            raise ValueError(f"detections: variant {variant!r} expects the fused [K, 6] detections, got None")
        return detection_score(detections, maps=maps, level_sizes=p.level_sizes, floor=p.floor,
                               class_weights=p.class_weights, reduce="sum" if variant == "detection_sum" else "max")
    if predicted is None:
        raise ValueError(f"predicted: variant {variant!r} expects the fused branch's class map, got None")
    if p.num_classes is None:
        raise ValueError(f"num_classes: variant {variant!r} expects VariantParams(num_classes=...), got None")
    if len(maps) != 1:
        raise ValueError(f"maps: variant {variant!r} expects one per-pixel map, got {len(maps)} levels")
    return region_score(maps[0], predicted, p.num_classes, class_weights=p.class_weights,
                        k=p.k if variant == "region_topk" else None)
