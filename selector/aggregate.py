"""From per-prediction scores to one score per image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def scale_balanced_mean(per_scale: Sequence, batched: bool | None = None) -> np.ndarray | float:
    """Mean within each pyramid level, then the mean of the levels.

    ``per_scale``: one array per level. For one image, each array holds that level's scores in any
    shape (e.g. [H_l, W_l, anchors]); with ``batched=True`` (or when every level is at least 2-D and
    they share their first dimension, with ``batched=None``) the first axis is the batch and one
    score per image is returned. The largest feature map thus counts as much as the smallest.
    """
    levels = [np.asarray(level) for level in per_scale]
    if not levels:
        raise ValueError("per_scale: expected at least one level, got an empty list")
    for i, level in enumerate(levels):
        if level.size == 0:
            raise ValueError(f"per_scale[{i}]: expected a non-empty array, got shape {level.shape}")
        if not np.issubdtype(level.dtype, np.number):
            raise ValueError(f"per_scale[{i}]: expected numbers, got dtype {level.dtype}")
    if batched is None:
        batched = all(level.ndim >= 2 for level in levels) and len({level.shape[0] for level in levels}) == 1
    if not batched:
        return float(np.mean([level.mean(dtype=np.float64) for level in levels]))
    n = levels[0].shape[0]
    for i, level in enumerate(levels):
        if level.ndim < 1 or level.shape[0] != n:
            raise ValueError(f"per_scale[{i}]: expected a leading batch axis of {n}, got shape {level.shape}")
    means = [level.reshape(n, -1).mean(axis=1, dtype=np.float64) for level in levels]
    return np.mean(np.stack(means, axis=0), axis=0)
