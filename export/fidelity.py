"""Fidelity gate: does a reduced-precision model (FP16 / INT8) keep the score and the detections?

On a labelled split (the MSRS test pairs by default), both models run on the same letterboxed
pairs; the report holds:

* ``spearman``: rank correlation of the per-image ``inconsistency`` (reference vs candidate),
* ``top_overlap``: overlap of the top ``top_fraction`` pairs each model would select,
* ``map50_reference`` / ``map50_candidate`` / ``map50_drop_points``: fused-branch AP50 (COCO,
  pycocotools) after the device's post-processing (score threshold, class-wise NMS), in points,
* ``passed`` and the ``failures``; the gate raises UserError (exit 1) when any threshold is missed.

Segmentation models report the fused mIoU instead of AP50.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from msmine.errors import UserError
from msmine.export.postprocess import candidates_to_detections
from msmine.feeds import batch, feeds
from msmine.model_contract import INCONSISTENCY, branch_output, non_finite

log = logging.getLogger(__name__)


@dataclass
class FidelityConfig:
    """Thresholds and settings of the fidelity gate."""

    min_spearman: float = 0.95  # least Spearman rank correlation of per-image inconsistency
    min_top_overlap: float = 0.80  # least overlap of the top-fraction selections
    top_fraction: float = 0.10  # the selection compared: the top 10 % of the pairs
    max_map50_drop: float = 1.0  # most fused AP50 (or mIoU) drop allowed, in points (0-100 scale)
    conf_threshold: float = 0.01  # candidate score threshold before NMS (mAP evaluation)
    nms_iou: float = 0.45  # class-wise NMS IoU
    split: str = "test"  # split of the labelled dataset
    limit: int = 0  # evaluate only the first N pairs (0 = all)
    batch_size: int = 8  # pairs per onnxruntime call


@dataclass
class FidelityReport:
    reference: str  # the reference model file (FP32)
    candidate: str  # the reduced-precision model file
    precision: str  # candidate precision (fp16 / int8)
    pairs: int  # how many pairs were compared
    spearman: float
    top_overlap: float
    map50_reference: float  # fused AP50 x 100 (segmentation: fused mIoU x 100)
    map50_candidate: float
    map50_drop_points: float
    thresholds: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    passed: bool = False

    def to_json(self) -> str:
        def clean(v):
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return json.dumps({k: clean(v) for k, v in asdict(self).items()}, indent=2)


def top_overlap(a: np.ndarray, b: np.ndarray, fraction: float) -> float:
    """|top(a) & top(b)| / k with k = ceil(fraction * n): how much the two selections agree."""
    n = len(a)
    k = max(1, int(math.ceil(fraction * n)))
    top_a = set(np.argsort(-np.asarray(a), kind="stable")[:k].tolist())
    top_b = set(np.argsort(-np.asarray(b), kind="stable")[:k].tolist())
    return len(top_a & top_b) / k


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))) or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run_models(sessions, dataset, input_size, cfg: FidelityConfig, task: str):
    """Run every session on the same pairs (preprocessed by :func:`msmine.feeds.feeds`, as the device
    does); -> per model (scores, per-image predictions, non-finite value counts per output), gts."""
    n = len(dataset) if not cfg.limit else min(cfg.limit, len(dataset))
    fused = branch_output("fused", task)
    results = [{"scores": [], "preds": [], "non_finite": {}} for _ in sessions]
    gts = []
    for start in range(0, n, cfg.batch_size):
        samples = [dataset[i] for i in range(start, min(n, start + cfg.batch_size))]
        items = [feeds(s.visible, s.thermal, input_size, rgb=True) for s in samples]
        inputs = batch(items)
        for s in samples:
            gts.append((s.boxes["fused"], s.labels["fused"]) if task == "detect" else s.mask)
        for sess, res in zip(sessions, results):
            names = [o.name for o in sess.get_outputs()]
            outputs = dict(zip(names, sess.run(names, inputs)))
            for name, count in non_finite(outputs).items():
                res["non_finite"][name] = res["non_finite"].get(name, 0) + count
            res["scores"].extend(np.asarray(outputs[INCONSISTENCY], dtype=np.float64).tolist())
            for f, o in zip(items, outputs[fused]):
                scale, pad = f.geometry()
                if task == "detect":
                    res["preds"].append(candidates_to_detections(
                        o, input_size, scale, pad, f.source_hw, cfg.conf_threshold, cfg.nms_iou))
                else:
                    res["preds"].append((o, scale, pad, f.source_hw))
    return results, gts


def _non_finite_line(which: str, counts: dict[str, int]) -> str:
    return f"{which} model outputs non-finite values (" + ", ".join(
        f"{name}: {count}" for name, count in sorted(counts.items())) + ")"


def _quality(preds, gts, task: str, num_classes: int, input_size) -> float:
    """Fused AP50 (detection) or mIoU (segmentation), x 100."""
    if task == "detect":
        from msmine.train.metrics import coco_detection_metrics

        return 100.0 * float(coco_detection_metrics(gts, preds, num_classes)["AP50"])
    import cv2

    from msmine.train.metrics import miou, segmentation_confusion

    conf = None
    for (mask_pred, scale, pad, (h, w)), gt in zip(preds, gts):
        if gt is None:
            continue
        # class map at the feature resolution -> model input -> original image
        full = cv2.resize(mask_pred.astype(np.uint8), (input_size[1], input_size[0]), interpolation=cv2.INTER_NEAREST)
        x0, y0 = pad
        crop = full[y0:y0 + round(h * scale), x0:x0 + round(w * scale)]
        pred = cv2.resize(crop, (w, h), interpolation=cv2.INTER_NEAREST)
        c = segmentation_confusion(pred, gt, num_classes)
        conf = c if conf is None else conf + c
    return float("nan") if conf is None else 100.0 * float(miou(conf)["mIoU"])


def fidelity_report(reference_path, candidate_path, data_root, cfg: FidelityConfig | None = None) -> FidelityReport:
    """Compare a reduced-precision model with its FP32 reference on a labelled split."""
    from msmine.calibration.onnx_scoring import session_metadata
    from msmine.train.data import open_dataset

    cfg = cfg or FidelityConfig()
    ref, cand = _session(reference_path), _session(candidate_path)
    meta = session_metadata(ref, f"model {reference_path}")
    cand_meta = session_metadata(cand, f"model {candidate_path}")
    task, input_size = meta.task, meta.input_size
    if INCONSISTENCY not in [o.name for o in ref.get_outputs()]:
        raise UserError("the fidelity gate needs the score outputs: export without --no-score")
    dataset = open_dataset(data_root, split=cfg.split)
    if len(dataset) == 0:
        raise UserError(f"no pairs in the {cfg.split} split of {data_root}")
    num_classes = len(meta.class_names)
    (r, c), gts = _run_models([ref, cand], dataset, input_size, cfg, task)
    s_ref, s_cand = np.asarray(r["scores"]), np.asarray(c["scores"])
    q_ref = _quality(r["preds"], gts, task, num_classes, input_size)
    q_cand = _quality(c["preds"], gts, task, num_classes, input_size)
    report = FidelityReport(
        reference=str(reference_path), candidate=str(candidate_path),
        precision=cand_meta.precision, pairs=len(s_ref),
        spearman=spearman(s_ref, s_cand), top_overlap=top_overlap(s_ref, s_cand, cfg.top_fraction),
        map50_reference=q_ref, map50_candidate=q_cand, map50_drop_points=q_ref - q_cand,
        thresholds={"min_spearman": cfg.min_spearman, "min_top_overlap": cfg.min_top_overlap,
                    "top_fraction": cfg.top_fraction, "max_map50_drop": cfg.max_map50_drop,
                    "metric": "fused AP50" if task == "detect" else "fused mIoU"},
    )
    if c["non_finite"]:  # e.g. an FP16 overflow: such a model must not ship
        report.failures.append(_non_finite_line("the candidate", c["non_finite"]))
    if r["non_finite"]:
        report.failures.append(_non_finite_line("the reference", r["non_finite"]))
    if not report.spearman >= cfg.min_spearman:  # NaN (constant scores) fails too
        report.failures.append(f"Spearman of inconsistency {report.spearman:.4f} < {cfg.min_spearman}")
    if report.top_overlap < cfg.min_top_overlap:
        report.failures.append(f"top-{cfg.top_fraction:.0%} overlap {report.top_overlap:.3f} < {cfg.min_top_overlap}")
    if math.isfinite(report.map50_drop_points) and report.map50_drop_points > cfg.max_map50_drop:
        report.failures.append(f"{report.thresholds['metric']} drop {report.map50_drop_points:.2f} points "
                               f"> {cfg.max_map50_drop}")
    elif not math.isfinite(report.map50_drop_points):
        report.failures.append(f"{report.thresholds['metric']} could not be computed (no ground truth?)")
    report.passed = not report.failures
    return report


def write_report(report: FidelityReport, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.to_json() + "\n")
    return path


def enforce(report: FidelityReport) -> None:
    """Raise UserError (exit 1) naming every missed threshold."""
    if not report.passed:
        raise UserError(f"fidelity gate failed for {report.candidate} ({report.precision}) on {report.pairs} pairs: "
                        + "; ".join(report.failures))
