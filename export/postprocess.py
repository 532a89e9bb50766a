"""Candidates -> detections: what the device does after the model (numpy + OpenCV NMS)."""

from __future__ import annotations

import cv2
import numpy as np


def candidates_to_detections(
    candidates: np.ndarray,
    input_size: tuple[int, int],
    scale: float,
    pad: tuple[int, int],
    image_size: tuple[int, int],
    conf_threshold: float = 0.01,
    nms_iou: float = 0.45,
    max_detections: int = 100,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[K, 6] candidates (x1 y1 x2 y2 normalised to the model input, score, class) of one image ->
    (boxes [M, 4] x1 y1 x2 y2 in original-image pixels, scores [M], labels [M]) after a score
    threshold and class-wise NMS (``cv2.dnn.NMSBoxesBatched``). ``scale``/``pad``: the letterbox."""
    cand = np.asarray(candidates, dtype=np.float32).reshape(-1, 6)
    cand = cand[cand[:, 4] >= conf_threshold]
    if len(cand) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    in_h, in_w = input_size
    boxes = cand[:, :4] * np.array([in_w, in_h, in_w, in_h], np.float32)
    boxes[:, 0::2] = (boxes[:, 0::2] - pad[0]) / scale
    boxes[:, 1::2] = (boxes[:, 1::2] - pad[1]) / scale
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, image_size[1])
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, image_size[0])
    labels = cand[:, 5].astype(np.int64)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
    keep = cv2.dnn.NMSBoxesBatched(xywh.tolist(), cand[:, 4].tolist(), labels.tolist(), conf_threshold, nms_iou)
    keep = np.asarray(keep, dtype=np.int64).ravel()
    keep = keep[np.argsort(-cand[keep, 4], kind="stable")][:max_detections]
    return boxes[keep], cand[keep, 4], labels[keep]
