"""One visible + thermal pair with its per-branch annotations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BRANCHES = ("visible", "thermal", "fused")


@dataclass
class PairSample:
    """A visible/thermal pair as the trainer sees it. Boxes are in pixels of these images."""

    id: str  # dataset-unique id (the file stem for MSRS, e.g. "00001D")
    visible: np.ndarray  # H x W x 3 uint8, RGB
    thermal: np.ndarray  # H x W x 1 uint8
    boxes: dict[str, np.ndarray]  # "visible" / "thermal" / "fused" -> [M, 4] float32, x1 y1 x2 y2 in pixels
    labels: dict[str, np.ndarray]  # same keys -> [M] int64 class ids
    mask: np.ndarray | None  # H x W uint8 class ids (segmentation) or None
    is_night: bool | None  # True / False where the dataset says (MSRS: id ends with N / D), else None


def empty_boxes() -> tuple[np.ndarray, np.ndarray]:
    """An empty (boxes [0, 4] float32, labels [0] int64) pair."""
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)


def same_for_all_branches(boxes: np.ndarray, labels: np.ndarray) -> tuple[dict, dict]:
    """One box set used for every branch (formats without per-modality annotations). Copies per branch."""
    return (
        {b: boxes.copy() for b in BRANCHES},
        {b: labels.copy() for b in BRANCHES},
    )


def clip_and_filter(
    boxes: np.ndarray, labels: np.ndarray, width: float, height: float, min_size: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Clip x1 y1 x2 y2 boxes to the image and drop those narrower or shorter than `min_size` pixels."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    labels = np.asarray(labels, np.int64).reshape(-1)
    if len(boxes) == 0:
        return empty_boxes()
    np.clip(boxes[:, 0::2], 0.0, width, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0.0, height, out=boxes[:, 1::2])
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    return boxes[keep], labels[keep]
