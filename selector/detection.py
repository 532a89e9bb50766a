"""Detection-level inconsistency: the visible/thermal disagreement at the fused branch's detections.

The paper's image score averages the per-anchor inconsistency over every anchor of every level, so
an image where the visible branch is unsure everywhere (night) scores high whatever it contains.
Scoring the *detections* instead (PPAL, CVPR 2024: a class-weighted sum over post-NMS detections
above a confidence floor; AL-MDN / AL-SSL: the maximum over detections) asks "do the branches
disagree about the objects the fused model sees?".

Two steps, each a function:

1. A value per detection, picked one of two documented ways:

   * :func:`anchor_values` - **the anchor it was decoded from.** ``values`` holds one score per
     anchor in the detector's flat anchor order (level, y, x, anchor; ``train/anchors.py``), e.g.
     ``inconsistency(p_visible, p_thermal).reshape(-1)``; ``anchor_index[i]`` is the anchor that
     detection ``i`` was decoded from. Exact, and what the trainer can compute;
     :func:`anchor_inconsistency` computes the inconsistency from the per-anchor probabilities
     at those ``K`` anchors only.
   * :func:`box_cell_values` - **the map cells its box covers.** For the device, whose model exports
     per-level inconsistency maps ``[h_l, w_l]`` (anchors of a location averaged) and decoded boxes
     without anchor indices. At a level with an ``h x w`` map, cell ``(i, j)`` has its centre at
     ``((j + 0.5) / w, (i + 0.5) / h)`` in normalised image coordinates; a box
     ``[x1, y1, x2, y2]`` (normalised, clipped to [0, 1]) covers the rows whose centre ``y`` lies
     in ``[y1, y2]`` and the columns whose centre ``x`` lies in ``[x1, x2]`` (closed intervals).
     When a box spans no centre along an axis (it is thinner than the cell spacing), that axis
     uses the one row (column) containing the box centre, so every box covers at least one cell.
     The level's value is the mean of the covered cells. Which level: with ``level_sizes`` (one
     typical box size ``sqrt(w * h)`` per level, normalised units; for SSD anchors of relative
     size ``s_l`` that is ``s_l * sqrt(H / W)``), the level whose size is nearest the box's
     ``sqrt(w * h)`` on a log scale (ties: the finer level), as the anchors matched at training;
     without ``level_sizes``, the mean over all levels (scale-balanced, like the paper).

2. :func:`aggregate_detections` - keep the detections whose confidence is ``>= floor``, weight each
   value by its class's weight, and reduce: ``"sum"`` (PPAL; grows with the number of
   detections), ``"max"`` (AL-MDN), or ``"mean"`` (the weighted mean, in [0, 1]). No detection
   above the floor gives ``empty`` (default 0.0).

:func:`detection_score` chains both for one image's ``[K, 6]`` detections
(``x1 y1 x2 y2 score class``, the exported graph's ``fused_detections`` layout). The detections
must be post-NMS: duplicates of one object would count it several times in the sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from msmine.selector.scores import Kind, inconsistency

Reduce = Literal["sum", "max", "mean"]


def split_detections(detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[K, 6+]`` rows ``x1 y1 x2 y2 score class`` -> (boxes ``[K, 4]``, scores ``[K]``, classes ``[K]`` int)."""
    det = np.asarray(detections, dtype=np.float64)
    if det.ndim != 2 or det.shape[1] < 6:
        raise ValueError(f"detections: expected a [K, 6] array (x1 y1 x2 y2 score class), got shape {det.shape}")
    return det[:, :4], det[:, 4], _class_ids(det[:, 5], "detections[:, 5]")


def _class_ids(classes, name: str) -> np.ndarray:
    arr = np.asarray(classes)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of class ids, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name}: expected integer class ids, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name}: expected integer class ids, got non-integral values")
    ids = arr.astype(np.int64)
    if ids.min() < 0:
        raise ValueError(f"{name}: expected class ids >= 0, got {ids.min()}")
    return ids


def _check_boxes(boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes: expected a [K, 4] array (x1 y1 x2 y2, normalised), got shape {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError("boxes: expected finite coordinates, got NaN or inf")
    b = np.clip(b, 0.0, 1.0)
    if np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1]):
        raise ValueError("boxes: expected x2 >= x1 and y2 >= y1 (x1 y1 x2 y2 order)")
    return b


def anchor_values(values, anchor_index) -> np.ndarray:
    """The per-anchor score at the anchor each detection was decoded from.

    ``values``: one score per anchor, any shape, read in flat (C) order = the detector's anchor
    order. ``anchor_index``: ``[K]`` integers in ``[0, A)``. Returns ``[K]`` float64.
    """
    v = np.asarray(values)
    if not np.issubdtype(v.dtype, np.number) or v.size == 0:
        raise ValueError(f"values: expected a non-empty array of numbers, got shape {v.shape} dtype {v.dtype}")
    v = v.reshape(-1)
    idx = _anchor_rows(anchor_index, v.size)
    if idx.size == 0:
        return np.zeros(0)
    return v[idx].astype(np.float64)


def _covered_range(lo: np.ndarray, hi: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last cell index (inclusive) whose centre (i + 0.5) / n lies in [lo, hi]; where
    none does, the cell holding the centre of [lo, hi]. ``lo``, ``hi``: [K]; ``n``: [L, 1]."""
    first = np.maximum(np.ceil(lo * n - 0.5), 0.0)
    last = np.minimum(np.floor(hi * n - 0.5), n - 1)
    empty = last < first
    if empty.any():
        own = np.clip(np.floor((lo + hi) * 0.5 * n), 0.0, n - 1)
        first = np.where(empty, own, first)
        last = np.where(empty, own, last)
    return first.astype(np.int64), last.astype(np.int64)


def _box_means(boxes: np.ndarray, levels: list[np.ndarray]) -> np.ndarray:
    """[L, K] mean of the covered cells of each level.

    All levels share one summed-area table: level ``l`` sits in its own block of rows of a
    zero canvas (left-aligned, zero-padded to the widest level), so a box's sum at level ``l`` is
    the usual four-corner difference with the block's row offset (rows of other blocks cancel,
    the zero padding adds nothing). Two cumulative sums for the whole frame.
    """
    heights = np.array([m.shape[0] for m in levels])
    widths = np.array([m.shape[1] for m in levels])
    row_offset = np.concatenate([[0], np.cumsum(heights)[:-1]])[:, None]
    canvas = np.zeros((int(heights.sum()) + 1, int(widths.max()) + 1))
    for off, m in zip(row_offset[:, 0], levels):
        canvas[off + 1: off + 1 + m.shape[0], 1: 1 + m.shape[1]] = m
    np.cumsum(canvas, axis=0, out=canvas)
    np.cumsum(canvas, axis=1, out=canvas)
    if np.isnan(canvas[-1, -1]):
        raise ValueError("maps: expected numbers without NaN, got NaN")
    r0, r1 = _covered_range(boxes[:, 1], boxes[:, 3], heights[:, None].astype(np.float64))
    c0, c1 = _covered_range(boxes[:, 0], boxes[:, 2], widths[:, None].astype(np.float64))
    top, bottom = r0 + row_offset, r1 + 1 + row_offset
    total = canvas[bottom, c1 + 1] - canvas[top, c1 + 1] - canvas[bottom, c0] + canvas[top, c0]
    return total / ((r1 - r0 + 1) * (c1 - c0 + 1))


def box_cell_values(boxes, maps: Sequence, *, level_sizes: Sequence[float] | None = None) -> np.ndarray:
    """Per-detection value from per-level maps: the mean of the cells its box covers (module doc).

    ``boxes``: ``[K, 4]`` normalised ``x1 y1 x2 y2``. ``maps``: one ``[h_l, w_l]`` array per level.
    ``level_sizes``: optional typical box size ``sqrt(w * h)`` of each level (normalised); picks
    one level per box, else all levels are averaged. Returns ``[K]`` float64.
    """
    b = _check_boxes(boxes)
    levels = [np.asarray(m) for m in maps]
    if not levels:
        raise ValueError("maps: expected at least one level, got an empty list")
    for i, m in enumerate(levels):
        if m.ndim != 2 or m.size == 0:
            raise ValueError(f"maps[{i}]: expected a non-empty [h, w] map, got shape {m.shape}")
        if not np.issubdtype(m.dtype, np.number):
            raise ValueError(f"maps[{i}]: expected numbers, got dtype {m.dtype}")
    if b.shape[0] == 0:
        return np.zeros(0)
    per_level = _box_means(b, levels)  # [L, K]
    if level_sizes is None:
        return per_level.mean(axis=0)
    sizes = np.asarray(level_sizes, dtype=np.float64)
    if sizes.shape != (len(levels),):
        raise ValueError(f"level_sizes: expected {len(levels)} sizes (one per level), got shape {sizes.shape}")
    if not np.all(sizes > 0) or not np.all(np.isfinite(sizes)):
        raise ValueError(f"level_sizes: expected finite sizes > 0, got {sizes.tolist()}")
    box_size = np.sqrt(np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-12))
    gap = np.abs(np.log(box_size)[None, :] - np.log(sizes)[:, None])  # [L, K]
    choice = np.argmin(gap, axis=0)  # first minimum: the finer level on a tie
    return per_level[choice, np.arange(b.shape[0])]


def aggregate_detections(values, scores, classes, *, floor: float = 0.5, class_weights=None,
                         reduce: Reduce = "sum", empty: float = 0.0) -> float:
    """One image's score from its detections' values (module doc, step 2).

    ``values``, ``scores``, ``classes``: ``[K]`` each (per-detection value, confidence, class id).
    ``class_weights``: one weight >= 0 per class id (default all 1). Returns a float.
    """
    if reduce not in ("sum", "max", "mean"):
        raise ValueError(f"reduce: expected 'sum', 'max' or 'mean', got {reduce!r}")
    if not np.isfinite(floor):
        raise ValueError(f"floor: expected a finite number, got {floor!r}")
    v = np.asarray(values, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    c = _class_ids(classes, "classes")
    if v.ndim != 1 or s.shape != v.shape or c.shape != v.shape:
        raise ValueError(f"values, scores, classes: expected three [K] arrays, got shapes {v.shape}, {s.shape}, {c.shape}")
    if np.isnan(v).any() or np.isnan(s).any():
        raise ValueError("values, scores: expected no NaN")
    keep = s >= floor
    if class_weights is None:
        w = np.ones(int(keep.sum()))
    else:
        cw = np.asarray(class_weights, dtype=np.float64)
        if cw.ndim != 1 or not np.all(np.isfinite(cw)) or np.any(cw < 0):
            raise ValueError(f"class_weights: expected a 1-D array of finite weights >= 0, got {cw!r}")
        if c.size and c.max() >= cw.size:
            raise ValueError(f"classes: expected ids < {cw.size} (one weight per class), got {c.max()}")
        w = cw[c[keep]]
    if w.size == 0:
        return float(empty)
    weighted = w * v[keep]
    if reduce == "sum":
        return float(weighted.sum())
    if reduce == "max":
        return float(weighted.max())
    total = w.sum()
    return float(weighted.sum() / total) if total > 0 else float(empty)


def anchor_inconsistency(p_visible, p_thermal, anchor_index, kind: Kind = "binary") -> np.ndarray:
    """The inconsistency at the anchors the detections were decoded from, computed only there.

    ``p_visible``, ``p_thermal``: per-anchor probabilities in the detector's anchor order:
    ``binary`` any shape read flat (one foreground probability per anchor); ``categorical`` a last
    class axis, the rest read flat (``[A, C]``, e.g. ``[N=1, A, C]``). Equal to
    ``anchor_values(inconsistency(p_visible, p_thermal, kind), anchor_index)`` at a fraction of
    the cost (``K`` anchors instead of all). Returns ``[K]`` float64.
    """
    pv, pt = np.asarray(p_visible), np.asarray(p_thermal)
    if pv.shape != pt.shape:
        raise ValueError(f"p_visible and p_thermal: expected equal shapes, got {pv.shape} and {pt.shape}")
    if kind == "categorical":
        if pv.ndim < 2:
            raise ValueError(f"p_visible: kind='categorical' expects [A, C] (a last class axis), got shape {pv.shape}")
        pv, pt = pv.reshape(-1, pv.shape[-1]), pt.reshape(-1, pt.shape[-1])
    else:
        pv, pt = pv.reshape(-1), pt.reshape(-1)
    rows = _anchor_rows(anchor_index, pv.shape[0])
    if rows.size == 0:
        return np.zeros(0)
    return np.asarray(inconsistency(pv[rows], pt[rows], kind=kind), dtype=np.float64).reshape(-1)


def _anchor_rows(anchor_index, count: int) -> np.ndarray:
    idx = np.asarray(anchor_index)
    if idx.ndim != 1:
        raise ValueError(f"anchor_index: expected a 1-D array, got shape {idx.shape}")
    if idx.size == 0:
        return idx.astype(np.int64)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"anchor_index: expected integers, got dtype {idx.dtype}")
    if idx.min() < 0 or idx.max() >= count:
        raise ValueError(f"anchor_index: expected indices in [0, {count}), got [{idx.min()}, {idx.max()}]")
    return idx


def detection_score(detections, *, maps: Sequence | None = None, level_sizes: Sequence[float] | None = None,
                    values=None, probabilities: tuple | None = None, kind: Kind = "binary", anchor_index=None,
                    floor: float = 0.5, class_weights=None, reduce: Reduce = "sum", empty: float = 0.0) -> float:
    """Detection-level inconsistency of one image.

    ``detections``: ``[K, 6]`` fused-branch post-NMS rows ``x1 y1 x2 y2 score class`` (normalised
    boxes). Give exactly one source of per-detection values:

    * ``maps`` - per-level maps, the cells each box covers (:func:`box_cell_values`, ``level_sizes``);
    * ``values`` with ``anchor_index`` - per-anchor scores at each detection's anchor (:func:`anchor_values`);
    * ``probabilities=(p_visible, p_thermal)`` with ``anchor_index`` (and ``kind``) - the
      inconsistency computed at those anchors only (:func:`anchor_inconsistency`).

    The rest as :func:`aggregate_detections`.
    """
    boxes, scores, classes = split_detections(detections)
    given = [name for name, v in (("maps", maps), ("values", values), ("probabilities", probabilities))
             if v is not None]
    if len(given) != 1:
        raise ValueError("detection_score: expected exactly one of maps=, values= or probabilities=, got "
                         + (" and ".join(given) if given else "neither"))
    if maps is not None:
        per_det = box_cell_values(boxes, maps, level_sizes=level_sizes)
    else:
        if anchor_index is None:
            raise ValueError(f"anchor_index: expected one anchor index per detection with {given[0]}=, got None")
        if values is not None:
            per_det = anchor_values(values, anchor_index)
        else:
            if not isinstance(probabilities, (tuple, list)) or len(probabilities) != 2:
                raise ValueError("probabilities: expected a pair (p_visible, p_thermal)")
            per_det = anchor_inconsistency(probabilities[0], probabilities[1], anchor_index, kind=kind)
        if per_det.shape[0] != boxes.shape[0]:
            raise ValueError(f"anchor_index: expected {boxes.shape[0]} indices (one per detection), got {per_det.shape[0]}")
    return aggregate_detections(per_det, scores, classes, floor=floor, class_weights=class_weights,
                                reduce=reduce, empty=empty)
