"""Inference over a dataset, per-branch metrics (split day / night) and pool scoring.

Detection: COCO mAP / AP50 / AP75 (pycocotools, via ``train.metrics``) and the pedestrian
log-average miss rate (class 0, "person"). Segmentation: mIoU. Each branch is scored against its
own labels: visible <- visible boxes, thermal <- infrared boxes, fused <- fusion boxes.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from msmine.metrics_format import flatten_metrics  # noqa: F401  (the one flattening; re-exported here)
from msmine.train.batching import collate, model_inputs
from msmine.train.models import BRANCHES
from msmine.train.postprocess import (
    detections_from_outputs,
    masks_from_logits,
    to_original_boxes,
    to_original_mask,
)
from msmine.train.scoring import score_outputs

log = logging.getLogger(__name__)


def _loader(prepared, batch_size: int, workers: int = 0):
    return torch.utils.data.DataLoader(prepared, batch_size=batch_size, shuffle=False, collate_fn=collate,
                                       num_workers=workers)


@torch.no_grad()
def run_inference(model, prepared, device, batch_size: int = 16, predictions: bool = True,
                  scores: bool = False, score_kind: str = "categorical", branches=BRANCHES,
                  score_threshold: float = 0.01, nms_iou: float = 0.45, max_detections: int = 100,
                  progress: bool = False, amp: bool = False, workers: int = 0) -> dict:
    """One pass over ``prepared`` (a :class:`train.batching.PreparedPairs` with train=False).

    Returns {"detections": {branch: [(boxes, scores, labels) in original pixels]}} (detect) or
    {"confusions": {branch: [C x C per image]}} (segment), and with ``scores`` also
    {"inconsistency": [n], "entropy": [n]} (image scores, numpy).
    """
    from msmine.train.metrics import segmentation_confusion

    model.eval().to(device)
    task = model.task
    result: dict = {"detections": {b: [] for b in branches}, "confusions": {b: [] for b in branches},
                    "inconsistency": [], "entropy": []}
    loader = _loader(prepared, batch_size, workers)
    if progress:
        from msmine.train.progress import progress_bar

        loader = progress_bar(loader, desc="inference")
    amp = amp and device.type == "cuda"
    for batch in loader:
        visible, thermal = model_inputs(batch, device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            outputs = model(visible, thermal)
        if scores:
            s = score_outputs(outputs, model.level_shapes, task, score_kind)
            result["inconsistency"].append(s["inconsistency"].float().cpu().numpy())
            result["entropy"].append(s["entropy"].float().cpu().numpy())
        if not predictions:
            continue
        hws = [prepared.image_hw(i) for i in batch["index"]]
        for branch in branches:
            out = outputs[branch]
            if task == "detect":
                dets = detections_from_outputs(out, model.anchors, model.input_size, score_threshold,
                                               nms_iou, max_detections)
                for (boxes, sc, lab), hw in zip(dets, hws):
                    result["detections"][branch].append((to_original_boxes(boxes, hw, model.input_size), sc, lab))
            else:
                masks = masks_from_logits(out["logits"], model.input_size).cpu().numpy()
                for m, hw, idx in zip(masks, hws, batch["index"]):
                    gt = prepared.dataset.annotations(idx).mask
                    pred = to_original_mask(m, hw, model.input_size)
                    result["confusions"][branch].append(
                        segmentation_confusion(pred, gt, len(model.class_names)))
    if scores:
        result["inconsistency"] = np.concatenate(result["inconsistency"]) if result["inconsistency"] else np.zeros(0)
        result["entropy"] = np.concatenate(result["entropy"]) if result["entropy"] else np.zeros(0)
    return result


GT_KEYS = {"visible": "visible", "thermal": "thermal", "fused": "fused"}


def per_class_ap50(gts: list, preds: list, num_classes: int) -> list[float]:
    """AP50 of each class alone (COCO's AP50 with only that class's boxes; NaN without ground truth)."""
    from msmine.train.metrics import coco_detection_metrics

    values = []
    for c in range(num_classes):
        g = [(np.asarray(b)[np.asarray(lab) == c], np.zeros(int((np.asarray(lab) == c).sum()), np.int64))
             for b, lab in gts]
        p = [(np.asarray(b)[np.asarray(lab) == c], np.asarray(s)[np.asarray(lab) == c],
              np.zeros(int((np.asarray(lab) == c).sum()), np.int64)) for b, s, lab in preds]
        values.append(float(coco_detection_metrics(g, p, 1)["AP50"]))
    return values


def detection_metrics(dataset, detections: dict, num_classes: int, splits=("all", "day", "night"),
                      person_class: int | None = 0, per_class: bool = False) -> dict:
    """{branch: {split: {"mAP", "AP50", "AP75", "LAMR"}}} against each branch's own labels.

    ``per_class``: also ``"per_class_AP50"`` (one AP50 per class) for the split ``all``.
    """
    from msmine.train.metrics import coco_detection_metrics, log_average_miss_rate, split_day_night

    annotations = [dataset.annotations(i) for i in range(len(dataset))]
    groups = split_day_night([a.is_night for a in annotations])
    metrics: dict = {}
    for branch, preds in detections.items():
        gts = [(a.boxes[GT_KEYS[branch]], a.labels[GT_KEYS[branch]]) for a in annotations]
        metrics[branch] = {}
        for split in splits:
            idx = groups.get(split, [])
            if not idx:
                continue
            g = [gts[i] for i in idx]
            p = [preds[i] for i in idx]
            m = dict(coco_detection_metrics(g, p, num_classes))
            if person_class is not None:
                m["LAMR"] = float(log_average_miss_rate(g, p, class_id=person_class))
            metrics[branch][split] = {k: float(v) for k, v in m.items() if np.isscalar(v)}
            if per_class and split == "all":
                metrics[branch][split]["per_class_AP50"] = per_class_ap50(g, p, num_classes)
    return metrics


def segmentation_metrics(dataset, confusions: dict, splits=("all", "day", "night")) -> dict:
    """{branch: {split: {"mIoU", "per_class"}}}."""
    from msmine.train.metrics import miou, split_day_night

    groups = split_day_night(list(dataset.is_night))
    metrics: dict = {}
    for branch, per_image in confusions.items():
        metrics[branch] = {}
        for split in splits:
            idx = groups.get(split, [])
            if not idx:
                continue
            total = np.sum([per_image[i] for i in idx], axis=0)
            m = miou(total)
            metrics[branch][split] = {"mIoU": float(m["mIoU"]), "per_class": [float(x) for x in m["per_class"]]}
    return metrics


def evaluate_model(model, prepared, device, batch_size: int = 16, splits=("all", "day", "night"),
                   branches=BRANCHES, progress: bool = False, cfg=None, workers: int = 0,
                   per_class: bool = False) -> dict:
    """Nested metrics ({branch: {split: {name: value}}}); ``per_class`` adds per-class AP50 (detection;
    segmentation always has its per-class IoU)."""
    kw = {}
    if cfg is not None:
        kw = dict(score_threshold=cfg.score_threshold, nms_iou=cfg.nms_iou, max_detections=cfg.max_detections)
    inf = run_inference(model, prepared, device, batch_size, branches=branches, progress=progress,
                        workers=workers, **kw)
    if model.task == "detect":
        person = 0 if model.class_names and model.class_names[0].lower() in ("person", "pedestrian") else None
        return detection_metrics(prepared.dataset, inf["detections"], len(model.class_names), splits, person,
                                 per_class=per_class)
    return segmentation_metrics(prepared.dataset, inf["confusions"], splits)


@torch.no_grad()
def score_pool(model, prepared, device, batch_size: int = 32, kind: str = "categorical", amp: bool = False,
               workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Image scores of a pool: (inconsistency [n], fused entropy [n]), both in [0, 1]."""
    inf = run_inference(model, prepared, device, batch_size, predictions=False, scores=True,
                        score_kind=kind, amp=amp, workers=workers)
    return inf["inconsistency"].astype(np.float64), inf["entropy"].astype(np.float64)
