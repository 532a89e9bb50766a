"""Pool selection: the top-b items of a scored pool, deterministically."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def select_top(scores, b: int, ids: Sequence | None = None) -> tuple[list, np.ndarray]:
    """Return the ``b`` highest-scoring ``(ids, scores)``, best first.

    Ties are broken by position in the pool (earlier wins), so the result does not depend on the
    sorting algorithm. ``ids`` defaults to the positions 0..n-1. ``b`` larger than the pool returns
    the whole pool sorted.
    """
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"scores: expected a 1-D array, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError("scores: expected no NaN")
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 0:
        raise ValueError(f"b: expected an integer >= 0, got {b!r}")
    if ids is None:
        ids = list(range(arr.size))
    elif len(ids) != arr.size:
        raise ValueError(f"ids: expected {arr.size} ids (one per score), got {len(ids)}")
    # lexsort sorts by the last key first: score descending, then position ascending.
    order = np.lexsort((np.arange(arr.size), -arr))[: int(b)]
    return [ids[i] for i in order], arr[order]
