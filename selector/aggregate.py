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


def _levels_and_batch(per_scale: Sequence, batched: bool | None) -> tuple[list[np.ndarray], bool]:
    levels = [np.asarray(level) for level in per_scale]
    if not levels:
        raise ValueError("per_scale: expected at least one level, got an empty list")
    for i, level in enumerate(levels):
        if level.size == 0:
            raise ValueError(f"per_scale[{i}]: expected a non-empty array, got shape {level.shape}")
        if not np.issubdtype(level.dtype, np.number):
            raise ValueError(f"per_scale[{i}]: expected numbers, got dtype {level.dtype}")
        if np.isnan(level).any():
            raise ValueError(f"per_scale[{i}]: expected no NaN")
    if batched is None:
        batched = all(level.ndim >= 2 for level in levels) and len({level.shape[0] for level in levels}) == 1
    if batched:
        n = levels[0].shape[0]
        for i, level in enumerate(levels):
            if level.ndim < 1 or level.shape[0] != n:
                raise ValueError(f"per_scale[{i}]: expected a leading batch axis of {n}, got shape {level.shape}")
    return levels, batched


def _mean_of_top(rows: np.ndarray, k: int) -> np.ndarray:
    """Mean of the ``k`` largest entries of each row of a 2-D array (``k`` <= row length)."""
    width = rows.shape[1]
    if k >= width:
        return rows.mean(axis=1, dtype=np.float64)
    top = np.partition(rows, width - k, axis=1)[:, width - k:]
    return top.mean(axis=1, dtype=np.float64)


def topk_mean(per_scale: Sequence, k: int, *, per_level: bool = False,
              batched: bool | None = None) -> np.ndarray | float:
    """Mean of the ``k`` highest per-prediction scores (MI-AOD style), one image or a batch.

    ``per_scale`` is read as in :func:`scale_balanced_mean` (one array per level; a leading batch
    axis with ``batched=True``, or detected the same way when ``None``). The predictions may be
    anchors ([H_l, W_l, anchors] or flat) or per-location map cells ([H_l, W_l]); a segmentation
    map is a single level.

    * ``per_level=False``: the ``k`` largest scores over all levels pooled; a fine level has more
      cells and so more chances to hold them.
    * ``per_level=True``: the mean of the ``min(k, size_l)`` largest of each level, then the mean
      of the levels (scale-balanced, like the paper's variant).

    ``k`` larger than the number of predictions averages them all, so ``k = inf`` in effect is
    the plain mean. Ties do not matter (the mean of the top-k values is unique).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected an integer >= 1, got {k!r}")
    levels, batched = _levels_and_batch(per_scale, batched)
    n = levels[0].shape[0] if batched else 1
    rows = [level.reshape(n, -1) for level in levels]
    if per_level:
        out = np.mean(np.stack([_mean_of_top(r, int(k)) for r in rows], axis=0), axis=0)
    else:
        out = _mean_of_top(np.concatenate(rows, axis=1), int(k))
    return out if batched else float(out[0])
