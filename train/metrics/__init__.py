"""Metrics: COCO mAP (pycocotools), pedestrian log-average miss rate, segmentation mIoU, day/night splits."""

from train.metrics.boxes import iou_matrix
from train.metrics.detection import coco_detection_metrics
from train.metrics.pedestrian import log_average_miss_rate, miss_rate_curve
from train.metrics.segmentation import miou, segmentation_confusion
from train.metrics.splits import split_day_night

__all__ = [
    "coco_detection_metrics",
    "iou_matrix",
    "log_average_miss_rate",
    "miou",
    "miss_rate_curve",
    "segmentation_confusion",
    "split_day_night",
]
