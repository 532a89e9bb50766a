"""Segmentation region scores: the inconsistency per predicted class, weighted by class.

Region-level selection with class weights (Cai et al., CVPR 2021, "Revisiting superpixels for
active learning in semantic segmentation with realistic annotation costs") beats image means: a
few pixels of a rare class where the branches disagree matter more than a large road. Here the
regions are the fused branch's predicted classes of one image:

``m_c`` = mean inconsistency over the pixels the fused branch predicts as class ``c`` (with ``k``:
the mean of the ``k`` highest of them, a top-k-pixel variant), 0 for a class it does not predict;

``score = sum_c w_c m_c / sum_c w_c`` over all ``C`` classes,

so the score lies in [0, 1] for per-pixel scores in [0, 1], does not change when every weight is
multiplied by the same factor, and an image showing rare (heavily weighted) classes where the
branches disagree ranks above one that shows only common classes. With equal weights it is the
mean over classes of the per-class means (absent classes count 0).
:func:`inverse_frequency_weights` makes the weights from labelled pixel counts.
"""

from __future__ import annotations

import numpy as np


def inverse_frequency_weights(counts, *, power: float = 1.0, smoothing: float = 1.0) -> np.ndarray:
    """Class weights ``w_c ∝ (total / (count_c + smoothing)) ** power``, normalised to sum 1.

    ``counts``: pixels (or regions) of each class in the labelled set. ``power`` 0 gives equal
    weights, 0.5 the square-root damping often used; ``smoothing`` keeps unseen classes finite.
    """
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size == 0 or not np.all(np.isfinite(n)) or np.any(n < 0):
        raise ValueError(f"counts: expected a non-empty 1-D array of counts >= 0, got {np.asarray(counts)!r}")
    if not (np.isfinite(power) and power >= 0):
        raise ValueError(f"power: expected a finite number >= 0, got {power!r}")
    if not (np.isfinite(smoothing) and smoothing > 0):
        raise ValueError(f"smoothing: expected a finite number > 0, got {smoothing!r}")
    w = ((n.sum() + smoothing) / (n + smoothing)) ** power
    return w / w.sum()


def region_score(values, predicted, num_classes: int, *, class_weights=None, k: int | None = None,
                 ignore_index: int | None = None) -> float:
    """Class-weighted region score of one image (module doc).

    ``values``: per-pixel scores (e.g. ``inconsistency(p_v, p_t, kind="categorical")``), any
    shape; ``predicted``: the fused branch's class ids, the same shape, in ``[0, num_classes)``
    (pixels equal to ``ignore_index`` are left out). ``k``: per-class top-k-pixel mean instead of
    the per-class mean. Returns a float.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes: expected an integer >= 1, got {num_classes!r}")
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise ValueError(f"k: expected an integer >= 1 or None, got {k!r}")
    v = np.asarray(values)
    p = np.asarray(predicted)
    if v.shape != p.shape:
        raise ValueError(f"values and predicted: expected equal shapes, got {v.shape} and {p.shape}")
    if not np.issubdtype(v.dtype, np.number) or (v.size and np.isnan(v.sum())):
        raise ValueError(f"values: expected numbers without NaN, got dtype {v.dtype}")
    if v.size and not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"predicted: expected integer class ids, got dtype {p.dtype}")
    v = v.reshape(-1)
    p = p.reshape(-1).astype(np.intp, copy=False)
    if ignore_index is not None:
        keep = p != ignore_index
        v, p = v[keep], p[keep]
    if class_weights is None:
        w = np.ones(num_classes)
    else:
        w = np.asarray(class_weights, dtype=np.float64)
        if w.shape != (num_classes,) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"class_weights: expected {num_classes} finite weights >= 0, got {w!r}")
        if w.sum() <= 0:
            raise ValueError("class_weights: expected at least one weight > 0, got all zero")
    try:
        counts = np.bincount(p, minlength=num_classes)  # one pass; raises on negative ids
    except ValueError:
        counts = np.zeros(num_classes + 1)
    if counts.size > num_classes:
        raise ValueError(f"predicted: expected class ids in [0, {num_classes}), got [{p.min()}, {p.max()}]")
    if k is None:
        sums = np.bincount(p, weights=v, minlength=num_classes)
    else:
        sums = np.zeros(num_classes)
        # Group the pixels by class with one stable sort (a radix sort for small integer types),
        # then take each class's top k from its contiguous slice.
        small = np.uint8 if num_classes <= 256 else np.uint16 if num_classes <= 65536 else np.intp
        grouped = v[np.argsort(p.astype(small, copy=False), kind="stable")]
        ends = np.cumsum(counts)
        for c in np.flatnonzero(counts):
            members = grouped[ends[c] - counts[c]: ends[c]]
            if members.size > k:
                members = np.partition(members, members.size - k)[members.size - k:]
            sums[c] = members.sum(dtype=np.float64)
        counts = np.minimum(counts, k)
    means = np.divide(sums, counts, out=np.zeros(num_classes), where=counts > 0)
    return float((w * means).sum() / w.sum())
