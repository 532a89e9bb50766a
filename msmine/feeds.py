"""How a visible/thermal pair becomes model input: the one preprocessing of the device, calibration,
the export gates and the benches (numpy + OpenCV; ground floor).

1. thermal to one grey channel; visible to three channels (grey or BGRA frames converted);
2. the registration warp (visible -> thermal pixel grid, :mod:`msmine.calibration_files`),
   when there is one, applied to the visible image;
3. a visible image still not of the thermal size is resized to it (``INTER_AREA``): the pair is
   now one grid, the grid boxes and heat maps are reported on;
4. both letterboxed to the model's input size (:mod:`msmine.letterbox`: aspect kept, bilinear,
   centred, zero padding), visible as RGB;
5. ``visible`` uint8 [H, W, 3] and ``thermal`` uint8 [H, W, 1], C-contiguous, the contract's
   per-pair input (:mod:`msmine.model_contract`; :func:`batch` stacks pairs to [N, ...]).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from msmine.letterbox import letterbox, letterbox_geometry
from msmine.model_contract import INPUT_NAMES, THERMAL, VISIBLE

Warp = Callable[[np.ndarray], np.ndarray]  # visible image -> visible image in the thermal grid


@dataclass
class PairFeeds:
    """One pair, aligned and made model input."""

    visible: np.ndarray  # model input: RGB uint8 [H, W, 3] at the model's size
    thermal: np.ndarray  # model input: uint8 [H, W, 1]
    aligned_visible: np.ndarray  # the visible image in the thermal grid, the caller's channel order
    aligned_thermal: np.ndarray  # the thermal image, grey h x w (the grid boxes are reported on)
    input_size: tuple[int, int]  # (H, W) of the model

    @property
    def source_hw(self) -> tuple[int, int]:
        """(h, w) of the aligned pair (what the letterbox maps from)."""
        return tuple(self.aligned_thermal.shape[:2])

    def geometry(self) -> tuple[float, tuple[int, int]]:
        """(scale, (pad_x, pad_y)) of the letterbox: a source pixel x lands on x * scale + pad_x."""
        scale, pad, _ = letterbox_geometry(*self.source_hw, self.input_size)
        return scale, pad

    def as_batch(self) -> dict[str, np.ndarray]:
        """``{"visible": [1, H, W, 3], "thermal": [1, H, W, 1]}``."""
        return batch([self])


def _uint8(image: np.ndarray, what: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{what} image must be uint8, got {image.dtype}")
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"{what} image must be H x W or H x W x C, got shape {image.shape}")
    return image


def align(visible: np.ndarray, thermal: np.ndarray, warp: Warp | None = None,
          rgb: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-3: (visible H x W x 3 in the thermal grid, same channel order; thermal grey H x W)."""
    visible, thermal = _uint8(visible, VISIBLE), _uint8(thermal, THERMAL)
    if thermal.ndim == 3:
        if thermal.shape[2] == 1:
            thermal = thermal[:, :, 0]
        else:
            code = (cv2.COLOR_RGBA2GRAY if rgb else cv2.COLOR_BGRA2GRAY) if thermal.shape[2] == 4 else (
                cv2.COLOR_RGB2GRAY if rgb else cv2.COLOR_BGR2GRAY)
            thermal = cv2.cvtColor(thermal, code)
    if visible.ndim == 2 or visible.shape[2] == 1:
        visible = cv2.cvtColor(visible.reshape(visible.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif visible.shape[2] == 4:
        visible = cv2.cvtColor(visible, cv2.COLOR_RGBA2RGB if rgb else cv2.COLOR_BGRA2BGR)
    if warp is not None:
        visible = warp(visible)
    if visible.shape[:2] != thermal.shape[:2]:
        visible = cv2.resize(visible, (thermal.shape[1], thermal.shape[0]), interpolation=cv2.INTER_AREA)
    return visible, thermal


def to_input(visible: np.ndarray, thermal: np.ndarray, input_size: tuple[int, int],
             rgb: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Steps 4-5 on an aligned pair (visible H x W x 3, thermal H x W): the model's per-pair feeds."""
    vis = visible if rgb else cv2.cvtColor(visible, cv2.COLOR_BGR2RGB)
    th = thermal[:, :, None] if thermal.ndim == 2 else thermal
    size = (int(input_size[0]), int(input_size[1]))
    if vis.shape[:2] != size:
        vis = letterbox(vis, size)[0]
    if th.shape[:2] != size:
        th = letterbox(th, size)[0]
    return np.ascontiguousarray(vis, dtype=np.uint8), np.ascontiguousarray(th, dtype=np.uint8)


def feeds(visible: np.ndarray, thermal: np.ndarray, input_size: tuple[int, int], warp: Warp | None = None,
          *, rgb: bool = False) -> PairFeeds:
    """A camera pair -> the model's input, the way the device makes it.

    ``visible``: BGR (OpenCV's order; ``rgb=True`` for RGB) H x W x 3, grey or 4-channel accepted;
    ``thermal``: grey H x W (or H x W x 1 / 3); both uint8, any sizes. ``warp``: the registration.
    """
    aligned_v, aligned_t = align(visible, thermal, warp, rgb)
    feed_v, feed_t = to_input(aligned_v, aligned_t, input_size, rgb)
    return PairFeeds(feed_v, feed_t, aligned_v, aligned_t, (int(input_size[0]), int(input_size[1])))


def batch(items: Sequence[PairFeeds]) -> dict[str, np.ndarray]:
    """Stack pairs into the contract's batched inputs ``{"visible": [N, H, W, 3], "thermal": [N, H, W, 1]}``."""
    if not items:
        raise ValueError("no pairs to batch")
    return {name: np.stack([getattr(it, name) for it in items]) for name in INPUT_NAMES}
