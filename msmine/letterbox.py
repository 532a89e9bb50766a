"""The one letterbox geometry shared by training, export, calibration and the device.

Resize keeping the aspect ratio (bilinear), centre, pad with a constant: a source point (x, y) lands
on ``(x * scale + pad_x, y * scale + pad_y)`` of the model input. Training letterboxes its pairs
this way, so the device must too, and must map the model's boxes and maps back the same way.
numpy + OpenCV only (the device imports it).
"""

from __future__ import annotations

import cv2
import numpy as np


def letterbox_geometry(height: int, width: int, out_size: tuple[int, int]) -> tuple[float, tuple[int, int],
                                                                                    tuple[int, int, int, int]]:
    """``(scale, (pad_x, pad_y), (x0, y0, x1, y1))``: the content rectangle inside ``out_size`` (H, W)."""
    out_h, out_w = int(out_size[0]), int(out_size[1])
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"out_size must be positive (H, W), got {out_size}")
    if height <= 0 or width <= 0:
        raise ValueError("cannot letterbox an empty image")
    scale = min(out_h / height, out_w / width)
    new_w = min(out_w, max(1, round(width * scale)))
    new_h = min(out_h, max(1, round(height * scale)))
    pad_x, pad_y = (out_w - new_w) // 2, (out_h - new_h) // 2
    return float(scale), (pad_x, pad_y), (pad_x, pad_y, pad_x + new_w, pad_y + new_h)


def letterbox(image: np.ndarray, out_size: tuple[int, int], fill: float | tuple = 0,
              interpolation: int = cv2.INTER_LINEAR) -> tuple[np.ndarray, float, tuple[int, int]]:
    """``(resized, scale, (pad_x, pad_y))`` for an H x W or H x W x C image (C kept, also C = 1)."""
    height, width = image.shape[:2]
    scale, pad, (x0, y0, x1, y1) = letterbox_geometry(height, width, out_size)
    new_w, new_h = x1 - x0, y1 - y0
    resized = image
    if (new_w, new_h) != (width, height):
        resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
        if image.ndim == 3 and resized.ndim == 2:  # cv2 drops a single channel axis
            resized = resized[:, :, None]
    out_h, out_w = int(out_size[0]), int(out_size[1])
    if (new_w, new_h) == (out_w, out_h):
        return np.ascontiguousarray(resized), scale, (0, 0)
    canvas = np.empty((out_h, out_w, *image.shape[2:]), image.dtype)
    canvas[...] = fill
    canvas[y0:y1, x0:x1] = resized
    return canvas, scale, pad


def unletterbox_normalized(boxes: np.ndarray, source_hw: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """Boxes ``[..., 4]`` (x1 y1 x2 y2) normalised to the model input -> normalised to the source image."""
    src_h, src_w = source_hw
    scale, (pad_x, pad_y), _ = letterbox_geometry(src_h, src_w, out_size)
    out_h, out_w = out_size
    b = np.asarray(boxes, np.float64).copy()
    b[..., 0::2] = (b[..., 0::2] * out_w - pad_x) / (scale * src_w)
    b[..., 1::2] = (b[..., 1::2] * out_h - pad_y) / (scale * src_h)
    return np.clip(b, 0.0, 1.0)


def content_crop(level_map: np.ndarray, source_hw: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """The part of a model-grid map (any resolution) that covers the source image, not the padding."""
    src_h, src_w = source_hw
    _, _, (x0, y0, x1, y1) = letterbox_geometry(src_h, src_w, out_size)
    out_h, out_w = out_size
    mh, mw = level_map.shape[:2]
    r0, r1 = int(np.floor(y0 / out_h * mh)), int(np.ceil(y1 / out_h * mh))
    c0, c1 = int(np.floor(x0 / out_w * mw)), int(np.ceil(x1 / out_w * mw))
    return level_map[r0:max(r1, r0 + 1), c0:max(c1, c0 + 1)]
