"""selector: the cross-modality inconsistency score and the selection policies built on it.

Pure numpy; imports nothing else of msmine (and never torch), so every part of the product can
use it: the trainer's active-learning loop, the exporter's parity checks, the device's streaming
selection and the server's ranking.

Score variants (one image): the paper's :func:`scale_balanced_mean` (the ``paper`` variant),
:func:`topk_mean` (MI-AOD), :func:`detection_score` (PPAL / AL-MDN, at the fused detections),
:func:`region_score` (class-weighted segmentation regions, Cai et al.), and per-stratum
normalisation (:func:`stratum_normalize`, :class:`StratumNormalizer`). Batch selection:
:func:`select_batch` and its pieces (module ``batch``); streaming: :class:`StreamingSelector`.
:func:`frame_score` names the per-frame variants (``VARIANTS``; ``"paper"`` is the paper's).
"""

from msmine.selector.aggregate import scale_balanced_mean, topk_mean
from msmine.selector.batch import (
    dedupe_frames,
    dedupe_hashes,
    default_radius,
    equal_quotas,
    k_center_greedy,
    power_sample,
    probcover,
    proportional_quotas,
    ranked,
    select_batch,
)
from msmine.selector.detection import (
    aggregate_detections,
    anchor_inconsistency,
    anchor_values,
    box_cell_values,
    detection_score,
    split_detections,
)
from msmine.selector.pool import select_top
from msmine.selector.scores import binary_entropy, categorical_entropy, combined, entropy, inconsistency
from msmine.selector.segmentation import inverse_frequency_weights, region_score
from msmine.selector.strata import StratumNormalizer, strata_by_threshold, stratum_normalize
from msmine.selector.streaming import (
    Candidate,
    Decision,
    OnlineQuantile,
    StreamConfig,
    StreamingSelector,
    TokenBucket,
)
from msmine.selector.variants import VARIANTS, VariantParams, frame_score

__all__ = [
    "VARIANTS",
    "Candidate",
    "Decision",
    "OnlineQuantile",
    "StratumNormalizer",
    "StreamConfig",
    "StreamingSelector",
    "TokenBucket",
    "VariantParams",
    "aggregate_detections",
    "anchor_inconsistency",
    "anchor_values",
    "binary_entropy",
    "box_cell_values",
    "categorical_entropy",
    "combined",
    "dedupe_frames",
    "dedupe_hashes",
    "default_radius",
    "detection_score",
    "entropy",
    "equal_quotas",
    "frame_score",
    "inconsistency",
    "inverse_frequency_weights",
    "k_center_greedy",
    "power_sample",
    "probcover",
    "proportional_quotas",
    "ranked",
    "region_score",
    "scale_balanced_mean",
    "select_batch",
    "select_top",
    "split_detections",
    "strata_by_threshold",
    "stratum_normalize",
    "topk_mean",
]
