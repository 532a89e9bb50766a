"""Segmentation masks as compact PNGs of class ids: the one encoder / decoder every room shares.

A mask is an ``H x W`` array of class ids (``uint8``, one id per pixel, 0..num_classes-1), stored as
an 8-bit single-channel (greyscale) PNG. The device writes them (``edge_runtime``), the server
validates and stores them (``server.ingest``), the labelling hand-off and the pull read them.

* :func:`encode_mask_png` ``(array) -> bytes``
* :func:`decode_mask_png` ``(data, expected_size=None, num_classes=None) -> np.ndarray`` (``uint8``
  ``H x W``); ``expected_size`` is ``(width, height)``, the order of the manifest's ``image_size``.
* :func:`unletterbox_mask` maps a class-id map on the model's (letterboxed) grid back to the camera
  image with the shared geometry of :mod:`msmine.letterbox` (nearest neighbour: ids never blend).

Every bad input raises :class:`msmine.errors.UserError` with a one-line reason. numpy + OpenCV only.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

from msmine.errors import UserError
from msmine.letterbox import letterbox_geometry

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_MASK_SIDE = 16384  # the wire's largest image side
MAX_CLASS_ID = 255  # 8-bit class ids


def _ihdr(data: bytes) -> tuple[int, int, int, int]:
    """``(width, height, bit_depth, colour_type)`` from the PNG header, before any decoding."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UserError(f"mask must be PNG bytes, got {type(data).__name__}")
    data = bytes(data[:33])
    if not data.startswith(PNG_MAGIC):
        raise UserError("mask is not a PNG file")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise UserError("mask PNG is truncated (no IHDR header)")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    if zlib.crc32(data[12:29]) & 0xFFFFFFFF != struct.unpack(">I", data[29:33])[0]:
        raise UserError("mask PNG header is corrupt (CRC mismatch)")
    return width, height, depth, colour


def encode_mask_png(array: np.ndarray) -> bytes:
    """An ``H x W`` integer array of class ids (0..255) -> 8-bit greyscale PNG bytes."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2 or a.size == 0:
        raise UserError(f"a mask must be a non-empty H x W array of class ids, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        raise UserError(f"a mask must hold integer class ids, got dtype {a.dtype}")
    if a.dtype != np.uint8:
        if a.size and (int(a.min()) < 0 or int(a.max()) > MAX_CLASS_ID):
            raise UserError(f"mask class ids must lie in [0, {MAX_CLASS_ID}], got {int(a.min())}..{int(a.max())}")
        a = a.astype(np.uint8)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(a), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:  # pragma: no cover - OpenCV refuses only impossible shapes, checked above
        raise UserError("could not encode the mask as PNG")
    return buf.tobytes()


def decode_mask_png(
    data: bytes, expected_size: tuple[int, int] | None = None, num_classes: int | None = None
) -> np.ndarray:
    """PNG bytes -> ``uint8`` ``H x W`` class ids, checked.

    ``expected_size`` is ``(width, height)`` (checked from the header, before decoding);
    ``num_classes`` bounds the ids (every id must be ``< num_classes``).
    """
    width, height, depth, colour = _ihdr(data)
    if colour != 0 or depth != 8:
        raise UserError(
            f"mask PNG must be 8-bit single channel (greyscale), got bit depth {depth}, colour type {colour}"
        )
    if not (0 < width <= MAX_MASK_SIDE and 0 < height <= MAX_MASK_SIDE):
        raise UserError(f"mask PNG size {width}x{height} is out of range")
    if expected_size is not None:
        ew, eh = int(expected_size[0]), int(expected_size[1])
        if (width, height) != (ew, eh):
            raise UserError(f"mask is {width}x{height}, the image is {ew}x{eh}")
    arr = cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 2 or arr.dtype != np.uint8 or arr.shape != (height, width):
        raise UserError("mask PNG is corrupt (cannot be decoded)")
    if num_classes is not None:
        top = int(arr.max())
        if top >= int(num_classes):
            raise UserError(f"mask has class id {top}, the model has {int(num_classes)} classes (ids 0..{int(num_classes) - 1})")
    return arr


def unletterbox_mask(grid: np.ndarray, source_hw: tuple[int, int], input_size: tuple[int, int]) -> np.ndarray:
    """A class-id map on the model grid (any resolution covering ``input_size`` (H, W), padding
    included) -> ``uint8`` ``source_hw`` (H, W) class ids of the camera image (nearest neighbour)."""
    g = np.asarray(grid)
    if g.ndim != 2 or g.size == 0:
        raise UserError(f"a segmentation map must be H x W, got shape {g.shape}")
    src_h, src_w = int(source_hw[0]), int(source_hw[1])
    in_h, in_w = int(input_size[0]), int(input_size[1])
    _, _, (x0, y0, x1, y1) = letterbox_geometry(src_h, src_w, (in_h, in_w))
    gh, gw = g.shape
    # the centre of each camera pixel, in model-input pixels, then in grid cells
    xs = x0 + (np.arange(src_w) + 0.5) * (x1 - x0) / src_w
    ys = y0 + (np.arange(src_h) + 0.5) * (y1 - y0) / src_h
    cols = np.clip((xs * gw / in_w).astype(np.int64), 0, gw - 1)
    rows = np.clip((ys * gh / in_h).astype(np.int64), 0, gh - 1)
    out = g[rows[:, None], cols[None, :]]
    if out.size and (int(out.min()) < 0 or int(out.max()) > MAX_CLASS_ID):
        raise UserError(f"segmentation class ids must lie in [0, {MAX_CLASS_ID}]")
    return out.astype(np.uint8)
