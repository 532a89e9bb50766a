"""Log-average miss rate (Caltech / KAIST pedestrian benchmark definition).

Detections of all images are ranked by score; each one, in score order within its image, is matched
to the unmatched ground-truth box with the highest IoU if that IoU >= `iou`. Along the ranking,
miss rate = 1 - recall and FPPI = false positives per image. The miss rate is read at 9 FPPI points
evenly spaced in log space over [1e-2, 1e0] (the value at the largest FPPI not above each point; 1
before the first detection) and the result is their geometric mean, each clamped at 1e-10 as in
Dollar's toolbox (so a perfect detector scores 1e-10, i.e. 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from msmine.train.metrics.boxes import iou_matrix
from msmine.train.metrics.detection import GroundTruth, Prediction, check_inputs

FPPI_POINTS = np.logspace(-2.0, 0.0, 9)


def _match_image(gt_boxes: np.ndarray, pred_boxes: np.ndarray, pred_scores: np.ndarray, iou: float) -> np.ndarray:
    """True-positive flag per prediction (greedy in score order)."""
    order = np.argsort(-pred_scores, kind="stable")
    is_tp = np.zeros(len(pred_boxes), bool)
    if len(gt_boxes) == 0 or len(pred_boxes) == 0:
        return is_tp
    overlaps = iou_matrix(pred_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), bool)
    for k in order:
        candidates = np.where(taken, -1.0, overlaps[k])
        best = int(np.argmax(candidates))
        if candidates[best] >= iou:
            taken[best] = True
            is_tp[k] = True
    return is_tp


def miss_rate_curve(
    gts: Sequence[GroundTruth], preds: Sequence[Prediction], class_id: int = 0, iou: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """(fppi, miss_rate) after each detection in descending score order."""
    images = check_inputs(gts, preds)
    scores, flags, num_gt = [], [], 0
    for gb, gl, pb, ps, pl in images:
        gt_boxes = gb[gl == class_id]
        keep = pl == class_id
        num_gt += len(gt_boxes)
        scores.append(ps[keep])
        flags.append(_match_image(gt_boxes, pb[keep], ps[keep], iou))
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_flags = np.concatenate(flags) if flags else np.zeros(0, bool)
    order = np.argsort(-all_scores, kind="stable")
    tp = np.cumsum(all_flags[order])
    fp = np.cumsum(~all_flags[order])
    fppi = fp / max(len(images), 1)
    miss = 1.0 - tp / num_gt if num_gt else np.full(len(tp), math.nan)
    return fppi, miss


def log_average_miss_rate(
    gts: Sequence[GroundTruth], preds: Sequence[Prediction], class_id: int = 0, iou: float = 0.5
) -> float:
    """LAMR in [0, 1] (lower is better) for `class_id`; NaN when there is no ground truth of that class."""
    num_gt = sum(int(np.sum(np.asarray(labels).reshape(-1) == class_id)) for _, labels in gts)
    if num_gt == 0:
        check_inputs(gts, preds)
        return math.nan
    fppi, miss = miss_rate_curve(gts, preds, class_id, iou)
    xs = np.concatenate([[-np.inf], fppi])
    ys = np.concatenate([[1.0], miss])
    sampled = np.array([ys[np.nonzero(xs <= ref)[0][-1]] for ref in FPPI_POINTS])
    return float(np.exp(np.mean(np.log(np.maximum(1e-10, sampled)))))
