"""Metrics: COCO mAP (pycocotools), pedestrian log-average miss rate, segmentation mIoU, day/night splits."""

from msmine.train.metrics.boxes import iou_matrix
from msmine.train.metrics.detection import coco_detection_metrics
from msmine.train.metrics.pedestrian import log_average_miss_rate, miss_rate_curve
from msmine.train.metrics.segmentation import miou, segmentation_confusion
from msmine.train.metrics.splits import split_day_night

__all__ = [
    "coco_detection_metrics",
    "iou_matrix",
    "log_average_miss_rate",
    "miou",
    "miss_rate_curve",
    "segmentation_confusion",
    "split_day_night",
]
