"""Turn a model's raw outputs into what the device emits: NMS'd detections and a heat map."""

from __future__ import annotations

import cv2
import numpy as np


def nms_detections(candidates: np.ndarray, score_threshold: float, iou_threshold: float) -> list[dict]:
    """Class-wise NMS over [K, 6] candidates (x1 y1 x2 y2 normalised, score, class id).

    Returns wire-format detections ``{"box", "score", "class_id"}``, best first, boxes clipped to [0, 1].
    """
    cand = np.asarray(candidates, dtype=np.float64).reshape(-1, 6)
    cand = cand[np.isfinite(cand).all(axis=1) & (cand[:, 4] >= score_threshold)]
    if len(cand) == 0:
        return []
    boxes = np.clip(cand[:, :4], 0.0, 1.0)
    x1, x2 = np.minimum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 0], boxes[:, 2])
    y1, y2 = np.minimum(boxes[:, 1], boxes[:, 3]), np.maximum(boxes[:, 1], boxes[:, 3])
    scores = np.clip(cand[:, 4], 0.0, 1.0)
    classes = cand[:, 5].astype(np.int32)
    keep = cv2.dnn.NMSBoxesBatched(np.stack([x1, y1, x2 - x1, y2 - y1], axis=1), scores.astype(np.float32),
                                   classes, float(score_threshold), float(iou_threshold))
    keep = sorted(np.asarray(keep, dtype=np.int64).reshape(-1).tolist(), key=lambda i: -scores[i])
    return [
        {"box": [float(x1[i]), float(y1[i]), float(x2[i]), float(y2[i])], "score": float(scores[i]),
         "class_id": int(classes[i])}
        for i in keep
    ]


HEAT_FLOOR_BITS = 0.05  # the colour scale tops out at max(the pair's peak, this)


def heat_map(level_maps: list[np.ndarray], size: tuple[int, int], floor: float = HEAT_FLOOR_BITS) -> np.ndarray:
    """Colour-mapped (BGR, JET) mean of the per-level inconsistency maps upsampled to ``size`` (w, h).

    The maps are in bits ([0, 1]). The top of the colour scale is the pair's own peak (at least
    ``floor`` bits), so where the branches disagree shows even when the disagreement is small;
    the absolute score travels in the manifest.
    """
    w, h = size
    acc = np.zeros((h, w), np.float32)
    for m in level_maps:
        acc += cv2.resize(np.asarray(m, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    acc /= max(len(level_maps), 1)
    top = max(float(acc.max()), floor)
    grey = np.clip(acc * (255.0 / top), 0, 255).astype(np.uint8)
    return cv2.applyColorMap(grey, cv2.COLORMAP_JET)
