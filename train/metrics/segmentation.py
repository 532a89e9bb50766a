"""Segmentation confusion matrix and mean IoU."""

from __future__ import annotations

import math

import numpy as np


def segmentation_confusion(pred_mask: np.ndarray, gt_mask: np.ndarray, num_classes: int) -> np.ndarray:
    """[C, C] int64 counts, rows = ground-truth class, columns = predicted class.

    Pixels whose ground truth is outside [0, C) (e.g. 255 = void) are not counted. Confusions of
    several images add up: ``sum(segmentation_confusion(p, g, C) for p, g in pairs)``.
    """
    pred = np.asarray(pred_mask)
    gt = np.asarray(gt_mask)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    pred = pred.astype(np.int64, copy=False).ravel()
    gt = gt.astype(np.int64, copy=False).ravel()
    valid = (gt >= 0) & (gt < num_classes)
    pred, gt = pred[valid], gt[valid]
    if len(pred) and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predicted class ids must lie in [0, {num_classes}), got {pred.min()}..{pred.max()}")
    return np.bincount(gt * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def miou(confusion: np.ndarray, ignore_index: int | None = None) -> dict:
    """{"mIoU": mean over classes, "per_class": [IoU per class]} from a confusion matrix.

    IoU_c = TP / (TP + FP + FN). A class absent from both ground truth and prediction has IoU NaN and
    is left out of the mean. `ignore_index`: pixels whose ground truth is that class are not counted
    and the class is left out (its per_class entry is NaN).
    """
    conf = np.asarray(confusion, np.float64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"confusion must be square [C, C], got {conf.shape}")
    if ignore_index is not None:
        if not 0 <= ignore_index < conf.shape[0]:
            raise ValueError(f"ignore_index {ignore_index} out of range for {conf.shape[0]} classes")
        conf = conf.copy()
        conf[ignore_index, :] = 0
    tp = np.diag(conf)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    per_class = np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
    if ignore_index is not None:
        per_class[ignore_index] = np.nan
    valid = ~np.isnan(per_class)
    mean = float(per_class[valid].mean()) if valid.any() else math.nan
    return {"mIoU": mean, "per_class": [float(v) for v in per_class]}
