"""Geometric augmentations applied identically to both images, the mask and all three box sets.

The seed paper trains with SSD's augmentations: expand (zoom out onto a mean-filled canvas), random
crop (SSD's min-IoU sampler) and horizontal flip. Here the crop keeps the image's aspect ratio and the
final resize is a letterbox (aspect ratio kept, centred, padded), so objects are never stretched.
``letterbox`` returns the scale and padding so predictions can be mapped back with
``unletterbox_boxes``.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from msmine.letterbox import letterbox as shared_letterbox
from msmine.letterbox import letterbox_geometry
from msmine.train.data.sample import PairSample

# SSD's crop sampler: None keeps the whole image; a number is the least IoU the crop must have with
# some object; -inf accepts any crop that keeps at least one object centre.
CROP_MIN_IOUS = (None, 0.1, 0.3, 0.5, 0.7, 0.9, -np.inf)
CROP_MIN_SCALE = 0.3  # smallest crop side, as a fraction of the image side
CROP_TRIES = 50


def letterbox(
    image: np.ndarray,
    out_size: tuple[int, int],
    fill: float | tuple = 0,
    interpolation: int = cv2.INTER_LINEAR,
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping the aspect ratio and pad (centred) to out_size = (H, W).

    Returns (resized, scale, (pad_x, pad_y)): a point (x, y) of the input lands on
    (x * scale + pad_x, y * scale + pad_y). The geometry is :mod:`msmine.letterbox`'s, shared
    with the device so both see the same pixels.
    """
    return shared_letterbox(image, out_size, fill=fill, interpolation=interpolation)


def letterbox_boxes(boxes: np.ndarray, scale: float, pad: tuple[int, int]) -> np.ndarray:
    """Map x1 y1 x2 y2 boxes of the original image into the letterboxed one."""
    out = np.asarray(boxes, np.float32).reshape(-1, 4) * np.float32(scale)
    out[:, 0::2] += pad[0]
    out[:, 1::2] += pad[1]
    return out


def unletterbox_boxes(
    boxes: np.ndarray, scale: float, pad: tuple[int, int], image_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Map x1 y1 x2 y2 boxes of the letterboxed image back to the original; clip when image_size (H, W) given."""
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out[:, 0::2] -= pad[0]
    out[:, 1::2] -= pad[1]
    out /= np.float32(scale)
    if image_size is not None:
        np.clip(out[:, 0::2], 0, image_size[1], out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, image_size[0], out=out[:, 1::2])
    return out


def _iou_with_rect(boxes: np.ndarray, rect: np.ndarray) -> np.ndarray:
    ix1 = np.maximum(boxes[:, 0], rect[0])
    iy1 = np.maximum(boxes[:, 1], rect[1])
    ix2 = np.minimum(boxes[:, 2], rect[2])
    iy2 = np.minimum(boxes[:, 3], rect[3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_boxes = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_rect = (rect[2] - rect[0]) * (rect[3] - rect[1])
    return inter / np.maximum(area_boxes + area_rect - inter, 1e-9)


def _centres_inside(boxes: np.ndarray, rect: np.ndarray) -> np.ndarray:
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx > rect[0]) & (cx < rect[2]) & (cy > rect[1]) & (cy < rect[3])


class _Geometry:
    """An axis-aligned affine map x' = a x + b (continuous pixel-edge coordinates) and the current size."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.a = np.array([1.0, 1.0])  # x, y scale (negative x scale = mirrored)
        self.b = np.array([0.0, 0.0])  # x, y offset

    def translate(self, dx: float, dy: float, height: int, width: int) -> None:
        self.b += (dx, dy)
        self.height, self.width = height, width

    def mirror(self) -> None:
        self.a[0], self.b[0] = -self.a[0], self.width - self.b[0]

    def scale(self, factor: float) -> None:
        self.a *= factor
        self.b *= factor

    def cv2_matrix(self) -> np.ndarray:
        """The 2x3 matrix for cv2.warpAffine, which maps pixel-centre indices (x_idx = x - 0.5)."""
        tx = self.b[0] + 0.5 * self.a[0] - 0.5
        ty = self.b[1] + 0.5 * self.a[1] - 0.5
        return np.array([[self.a[0], 0.0, tx], [0.0, self.a[1], ty]])


class PairAugment:
    """Callable ``(sample, rng) -> sample`` producing out_size (H, W) images, mask and boxes.

    train=True: expand (p=0.5, ratio in [1, expand_max], mean fill), SSD min-IoU crop keeping the
    aspect ratio, horizontal flip (p=0.5), then letterbox; the steps are composed into one affine
    map, so each image is resampled once (cv2.warpAffine). train=False: only the letterbox.
    Padding: images get `pad_value` in the letterbox border (expand areas get the image mean); the
    mask gets `mask_fill` in both (default 0, MSRS's "unlabelled").
    """

    def __init__(
        self,
        out_size: tuple[int, int],
        train: bool,
        expand_max: float = 2.0,
        crop: bool = True,
        flip: bool = True,
        mask_fill: int = 0,
        pad_value: int = 0,
    ) -> None:
        if len(out_size) != 2 or min(out_size) <= 0:
            raise ValueError(f"out_size must be (H, W) positive, got {out_size}")
        if expand_max < 1.0:
            raise ValueError(f"expand_max must be >= 1, got {expand_max}")
        self.out_size = (int(out_size[0]), int(out_size[1]))  # (H, W) of the output
        self.train = train  # False: letterbox only
        self.expand_max = float(expand_max)  # largest zoom-out ratio (1 disables expand)
        self.crop = crop  # SSD-style random crop
        self.flip = flip  # random horizontal flip
        self.mask_fill = mask_fill  # mask value in padded areas
        self.pad_value = pad_value  # image value in letterbox padding

    def __call__(self, sample: PairSample, rng: np.random.Generator) -> PairSample:
        if sample.visible.size == 0 or sample.thermal.size == 0:
            raise ValueError(f"pair {sample.id!r} has no image data (annotations-only sample?)")
        if not self.train:
            return self._letterbox(sample)
        height, width = sample.visible.shape[:2]
        geometry = _Geometry(height, width)
        boxes = {k: np.asarray(v, np.float32).reshape(-1, 4).copy() for k, v in sample.boxes.items()}
        labels = {k: np.asarray(v, np.int64).reshape(-1).copy() for k, v in sample.labels.items()}
        expanded = False
        if self.expand_max > 1.0 and rng.random() < 0.5:
            ratio = rng.uniform(1.0, self.expand_max)
            new_h, new_w = int(height * ratio), int(width * ratio)
            left = int(rng.integers(0, new_w - width + 1))
            top = int(rng.integers(0, new_h - height + 1))
            geometry.translate(left, top, new_h, new_w)
            for branch in boxes:
                boxes[branch] += np.array([left, top, left, top], np.float32)
            expanded = True
        if self.crop:
            rect = self._sample_crop(boxes, geometry.height, geometry.width, rng)
            if rect is not None:
                left, top, right, bottom = (int(v) for v in rect)
                for branch in boxes:
                    keep = _centres_inside(boxes[branch], rect)
                    kept = boxes[branch][keep]
                    np.clip(kept[:, 0::2], left, right, out=kept[:, 0::2])
                    np.clip(kept[:, 1::2], top, bottom, out=kept[:, 1::2])
                    boxes[branch] = kept - np.array([left, top, left, top], np.float32)
                    labels[branch] = labels[branch][keep]
                geometry.translate(-left, -top, bottom - top, right - left)
        if self.flip and rng.random() < 0.5:
            for branch in boxes:
                boxes[branch] = _mirror_boxes(boxes[branch], geometry.width)
            geometry.mirror()
        scale, pad, content = _letterbox_geometry(geometry.height, geometry.width, self.out_size)
        geometry.scale(scale)
        geometry.translate(pad[0], pad[1], *self.out_size)
        matrix = geometry.cv2_matrix()
        visible_fill = cv2.mean(sample.visible)[:3] if expanded else (self.pad_value,) * 3
        thermal_fill = cv2.mean(sample.thermal)[0] if expanded else self.pad_value
        visible = self._warp(sample.visible, matrix, visible_fill, self.pad_value, content, cv2.INTER_LINEAR)
        thermal = self._warp(sample.thermal, matrix, thermal_fill, self.pad_value, content, cv2.INTER_LINEAR)
        mask = None
        if sample.mask is not None:
            mask = self._warp(sample.mask, matrix, self.mask_fill, self.mask_fill, content, cv2.INTER_NEAREST)
        return dataclasses.replace(
            sample,
            visible=visible,
            thermal=thermal,
            mask=mask,
            boxes={k: letterbox_boxes(v, scale, pad) for k, v in boxes.items()},
            labels=labels,
        )

    def _warp(self, image, matrix, border, pad_value, content, interpolation) -> np.ndarray:
        out_h, out_w = self.out_size
        border_value = tuple(float(v) for v in border) if np.ndim(border) else float(border)
        warped = cv2.warpAffine(
            image, matrix, (out_w, out_h), flags=interpolation, borderMode=cv2.BORDER_CONSTANT,
            borderValue=border_value,
        )
        if image.ndim == 3 and warped.ndim == 2:
            warped = warped[:, :, None]
        x0, y0, x1, y1 = content
        if (x0, y0, x1, y1) != (0, 0, out_w, out_h):
            warped[:y0], warped[y1:], warped[:, :x0], warped[:, x1:] = pad_value, pad_value, pad_value, pad_value
        return warped

    @staticmethod
    def _sample_crop(boxes: dict, height: int, width: int, rng: np.random.Generator) -> np.ndarray | None:
        """SSD's sampler with crops of the image's aspect ratio; None keeps the whole image."""
        all_boxes = np.concatenate([b for b in boxes.values()] or [np.zeros((0, 4), np.float32)])
        mode = CROP_MIN_IOUS[int(rng.integers(len(CROP_MIN_IOUS)))]
        if mode is None:
            return None
        for _ in range(CROP_TRIES):
            scale = rng.uniform(CROP_MIN_SCALE, 1.0)
            crop_w, crop_h = max(1, int(width * scale)), max(1, int(height * scale))
            left = int(rng.integers(0, width - crop_w + 1))
            top = int(rng.integers(0, height - crop_h + 1))
            rect = np.array([left, top, left + crop_w, top + crop_h], np.float32)
            if len(all_boxes):
                if _iou_with_rect(all_boxes, rect).max() < mode:
                    continue
                if not _centres_inside(all_boxes, rect).any():
                    continue
            return rect
        return None

    def _letterbox(self, sample: PairSample) -> PairSample:
        visible, scale, pad = letterbox(sample.visible, self.out_size, fill=self.pad_value)
        thermal, _, _ = letterbox(sample.thermal, self.out_size, fill=self.pad_value)
        mask = None
        if sample.mask is not None:
            mask, _, _ = letterbox(sample.mask, self.out_size, fill=self.mask_fill, interpolation=cv2.INTER_NEAREST)
        return dataclasses.replace(
            sample,
            visible=visible,
            thermal=thermal,
            mask=mask,
            boxes={k: letterbox_boxes(v, scale, pad) for k, v in sample.boxes.items()},
            labels={k: np.asarray(v, np.int64).copy() for k, v in sample.labels.items()},
        )


def _letterbox_geometry(
    height: int, width: int, out_size: tuple[int, int]
) -> tuple[float, tuple[int, int], tuple[int, int, int, int]]:
    """scale, (pad_x, pad_y) and the content rectangle (x0, y0, x1, y1) of a letterbox, as `letterbox` does."""
    return letterbox_geometry(height, width, out_size)


def _mirror_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


def hflip(sample: PairSample) -> PairSample:
    """Mirror the pair, its mask and all box sets left-right."""
    width = sample.visible.shape[1]
    boxes = {k: _mirror_boxes(v, width) for k, v in sample.boxes.items()}
    return dataclasses.replace(
        sample,
        visible=np.ascontiguousarray(sample.visible[:, ::-1]),
        thermal=np.ascontiguousarray(sample.thermal[:, ::-1]),
        mask=None if sample.mask is None else np.ascontiguousarray(sample.mask[:, ::-1]),
        boxes=boxes,
    )
