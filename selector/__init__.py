"""selector: the cross-modality inconsistency score and the selection policies built on it.

Pure numpy; imports nothing else of msmine (and never torch), so every part of the product can
use it: the trainer's active-learning loop, the exporter's parity checks, the device's streaming
selection and the server's ranking.
"""

from msmine.selector.aggregate import scale_balanced_mean
from msmine.selector.pool import select_top
from msmine.selector.scores import binary_entropy, categorical_entropy, combined, entropy, inconsistency
from msmine.selector.streaming import (
    Candidate,
    Decision,
    OnlineQuantile,
    StreamConfig,
    StreamingSelector,
    TokenBucket,
)

__all__ = [
    "Candidate",
    "Decision",
    "OnlineQuantile",
    "StreamConfig",
    "StreamingSelector",
    "TokenBucket",
    "binary_entropy",
    "categorical_entropy",
    "combined",
    "entropy",
    "inconsistency",
    "scale_balanced_mean",
    "select_top",
]
