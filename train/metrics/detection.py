"""COCO detection metrics (mAP, AP50, AP75) via pycocotools, from in-memory boxes."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence

import numpy as np

GroundTruth = tuple[np.ndarray, np.ndarray]  # boxes [M, 4] x1 y1 x2 y2 pixels, labels [M]
Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes [K, 4], scores [K], labels [K]


def _as_boxes(boxes, what: str, index: int) -> np.ndarray:
    array = np.asarray(boxes, np.float64)
    if array.size == 0:
        return np.zeros((0, 4))
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{what} of image {index}: expected boxes of shape [N, 4], got {array.shape}")
    return array


def _as_vector(values, length: int, what: str, index: int, dtype) -> np.ndarray:
    array = np.asarray(values, dtype).reshape(-1)
    if len(array) != length:
        raise ValueError(f"{what} of image {index}: expected {length} values (one per box), got {len(array)}")
    return array


def check_inputs(gts: Sequence[GroundTruth], preds: Sequence[Prediction]) -> list[tuple]:
    """Normalised (gt_boxes, gt_labels, pred_boxes, pred_scores, pred_labels) per image; shape errors -> ValueError."""
    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} ground-truth images but {len(preds)} prediction images")
    images = []
    for index, ((gt_boxes, gt_labels), (pred_boxes, pred_scores, pred_labels)) in enumerate(zip(gts, preds)):
        gb = _as_boxes(gt_boxes, "ground truth", index)
        pb = _as_boxes(pred_boxes, "predictions", index)
        images.append(
            (
                gb,
                _as_vector(gt_labels, len(gb), "ground-truth labels", index, np.int64),
                pb,
                _as_vector(pred_scores, len(pb), "prediction scores", index, np.float64),
                _as_vector(pred_labels, len(pb), "prediction labels", index, np.int64),
            )
        )
    return images


def _annotation(ann_id: int, image_id: int, box: np.ndarray, label: int) -> dict:
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(0.0, x2 - x1), max(0.0, y2 - y1)
    return {"id": ann_id, "image_id": image_id, "category_id": label + 1, "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": 0}


def coco_detection_metrics(
    gts: Sequence[GroundTruth], preds: Sequence[Prediction], num_classes: int, max_detections: int = 100
) -> dict[str, float]:
    """{"mAP", "AP50", "AP75"}: COCO AP averaged over IoU 0.50:0.95, at 0.50 and at 0.75 (pycocotools).

    gts: per image (boxes [M, 4] x1 y1 x2 y2 pixels, labels [M]); preds: per image (boxes [K, 4],
    scores [K], labels [K]). Images without ground truth or predictions are fine. Classes without any
    ground truth are left out of the average (COCO's rule); with no ground truth at all the values are NaN.
    At most `max_detections` per image count (COCO's 100), the highest scoring.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = check_inputs(gts, preds)
    for index, (_, gl, _, _, pl) in enumerate(images):
        for labels, what in ((gl, "ground-truth"), (pl, "predicted")):
            if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
                raise ValueError(f"{what} label out of range [0, {num_classes}) in image {index}: {labels.tolist()}")
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    image_entries = [{"id": i + 1} for i in range(len(images))]
    gt_anns, dt_anns = [], []
    for i, (gb, gl, pb, ps, pl) in enumerate(images):
        for box, label in zip(gb, gl):
            gt_anns.append(_annotation(len(gt_anns) + 1, i + 1, box, int(label)))
        for box, score, label in zip(pb, ps, pl):
            ann = _annotation(len(dt_anns) + 1, i + 1, box, int(label))
            ann["score"] = float(score)
            dt_anns.append(ann)

    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        coco_gt = COCO()
        coco_gt.dataset = {"images": image_entries, "categories": categories, "annotations": gt_anns}
        coco_gt.createIndex()
        coco_dt = COCO()
        coco_dt.dataset = {"images": image_entries, "categories": categories, "annotations": dt_anns}
        coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.maxDets = [1, 10, int(max_detections)]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats

    def value(x: float) -> float:
        return float(x) if x >= 0 else math.nan  # pycocotools' -1 = undefined (no ground truth)

    return {"mAP": value(stats[0]), "AP50": value(stats[1]), "AP75": value(stats[2])}
