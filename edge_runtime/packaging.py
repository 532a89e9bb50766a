"""Preprocessing of a pair for the model, and packaging of a kept pair for the spool (wire manifest)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from msmine import wire
from msmine.edge_runtime.model import BRANCHES, ModelInfo
from msmine.edge_runtime.pairing import Pair
from msmine.edge_runtime.postprocess import heat_map, nms_detections
from msmine.edge_runtime.registration import Warp
from msmine.feeds import feeds, to_input
from msmine.letterbox import content_crop, unletterbox_normalized
from msmine.masks import encode_mask_png, unletterbox_mask
from msmine.model_contract import ENTROPY, INCONSISTENCY, branch_output

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    pair: Pair
    visible: np.ndarray  # aligned visible image, BGR, at the thermal grid's size (what is uploaded)
    thermal: np.ndarray  # thermal image, grey H x W
    feed_visible: np.ndarray  # model input: RGB [H, W, 3] at the model's size
    feed_thermal: np.ndarray  # model input: [H, W, 1]
    size: tuple[int, int]  # (H, W) of the feeds


@dataclass
class Result:
    prepared: Prepared
    outputs: dict[str, np.ndarray]  # this pair's slice of every model output
    model: ModelInfo  # the model that produced it
    selection: tuple[str, float] | None = None  # (policy, score) the selector kept the pair on

    @property
    def inconsistency(self) -> float:
        return float(self.outputs[INCONSISTENCY])

    @property
    def entropy(self) -> float:
        return float(self.outputs[ENTROPY])


def prepare(pair: Pair, size_hw: tuple[int, int], warp: Warp | None) -> Prepared:
    """Align the pair (registration warp, same size), then make the model's uint8 NHWC feeds (:func:`msmine.feeds.feeds`)."""
    f = feeds(pair.visible.image, pair.thermal.image, size_hw, warp)
    return Prepared(pair, f.aligned_visible, f.aligned_thermal, f.visible, f.thermal, size_hw)


def make_feeds(visible: np.ndarray, thermal: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Feeds of an already aligned pair (BGR visible, grey thermal) at another model size."""
    return to_input(visible, thermal, size_hw)


def detections(result: Result, branch: str, score_threshold: float, iou: float) -> list[dict]:
    """NMS'd detections of one branch, restricted to the model's class ids."""
    key = branch_output(branch, "detect")
    if key not in result.outputs:
        return []
    n_classes = len(result.model.class_names)
    candidates = np.array(result.outputs[key], dtype=np.float64, copy=True).reshape(-1, 6)
    prep = result.prepared
    # Boxes are normalised to the letterboxed model input: map them back to the image.
    candidates[:, :4] = unletterbox_normalized(candidates[:, :4], prep.thermal.shape[:2], prep.size)
    dets = [d for d in nms_detections(candidates, score_threshold, iou) if d["class_id"] < n_classes]
    return dets[:wire.MAX_DETECTIONS]


def masks(result: Result) -> dict[str, bytes]:
    """Segmentation: each branch's class-id map, mapped back from the letterboxed model grid to the
    camera image (the uploaded image's size) and encoded as an 8-bit greyscale PNG. A branch whose
    ids fall outside the model's classes is left out (logged), never sent to be refused."""
    if result.model.task != "segment":
        return {}
    prep, n_classes = result.prepared, len(result.model.class_names)
    out = {}
    for branch in BRANCHES:
        grid = result.outputs.get(branch_output(branch, "segment"))
        if grid is None:
            continue
        grid = np.asarray(grid)
        top = int(grid.max()) if grid.size else 0
        if grid.size == 0 or int(grid.min()) < 0 or top >= n_classes:
            log.warning("%s segmentation has class id %d outside the model's %d classes; mask not uploaded",
                        branch, top, n_classes)
            continue
        out[branch] = encode_mask_png(unletterbox_mask(grid, prep.thermal.shape[:2], prep.size))
    return out


def encode(image: np.ndarray, image_format: str, jpeg_quality: int) -> bytes:
    if image_format == "jpeg":
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("image encoding failed")
    return buf.tobytes()


def package(result: Result, *, device_id: str, image_format: str, jpeg_quality: int, score_threshold: float,
            iou: float, location: dict | None) -> tuple[dict, dict[str, bytes]]:
    """The manifest and files of a kept pair (images, heat map, three branches' pre-annotations).

    The manifest carries the inconsistency (``score``) and, when the result has one, the selection
    policy and the score the pair was kept on (``selection``, wire schema 2)."""
    prep, model = result.prepared, result.model
    h, w = prep.thermal.shape[:2]
    maps = [content_crop(result.outputs[name], (h, w), prep.size) for name in model.map_names]
    files = {
        "visible": encode(prep.visible, image_format, jpeg_quality),
        "thermal": encode(prep.thermal, image_format, jpeg_quality),
        "heatmap": encode(heat_map(maps, (w, h)), "png", 0),
    }
    predictions = {b: detections(result, b, score_threshold, iou) for b in BRANCHES} if model.task == "detect" else {}
    mask_pngs = masks(result)
    manifest = wire.build_manifest(
        device_id=device_id,
        captured_at={"visible": prep.pair.visible.wall, "thermal": prep.pair.thermal.wall},
        model_version=model.version,
        model_hash=model.sha256,
        task=model.task,
        score=min(max(result.inconsistency, 0.0), 1.0),  # the paper's score, beside what selection used
        selection=None if result.selection is None else {"policy": result.selection[0],
                                                          "score": float(result.selection[1])},
        image_size=(w, h),
        class_names=model.class_names,
        files=files,
        predictions=predictions,
        location=location,
        masks=mask_pngs or None,
    )
    return manifest, {**files, **wire.mask_files(mask_pngs)}
