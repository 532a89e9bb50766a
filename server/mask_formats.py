"""Mask encodings of the labelling tools <-> class-id arrays (numpy + OpenCV, no I/O).

A class-id mask is an ``H x W`` ``uint8`` array; id 0 is the background (``unlabelled``), which no
tool annotates. Each tool describes one class region at a time as a boolean ``H x W`` array:

* **COCO RLE** (``segmentation`` = ``{"size": [h, w], "counts": ...}``, column-major runs starting
  with a background run). ``counts`` is a list of ints (uncompressed; what CVAT / Datumaro write,
  ``iscrowd: 1``) or pycocotools' compressed string (``mask.encode``). Both are decoded here.
* **COCO polygons** (``segmentation`` = ``[[x1, y1, x2, y2, ...], ...]`` in pixels): outer contours
  from OpenCV ``findContours`` (pixel-centre coordinates); decoded with ``fillPoly``. A polygon has
  no holes, so polygons are an approximation of a mask; RLE is exact.
* **Label Studio brush RLE** (``value.rle``, ``format: "rle"``): the bit-packed run-length format of
  Label Studio's front end (thi.ng rle-pack), over the flattened ``H x W x 4`` RGBA layer; the
  region is the alpha channel. Header: 32 bits value count, 5 bits word size - 1, four 4-bit run
  length widths - 1; then tokens ``flag(1) width-index(2) length-1`` followed by one word (a run,
  flag 1) or ``length`` words (literals, flag 0). The encoder writes what
  ``label_studio_converter.brush.encode_rle`` writes (word size 8, run widths 3, 4, 8, 16).
* **Label Studio polygons** (``value.points`` = ``[[x%, y%], ...]``, percent of width / height).
"""

from __future__ import annotations

import cv2
import numpy as np

from msmine.errors import UserError

BACKGROUND = 0
BRUSH_RUN_WIDTHS = (3, 4, 8, 16)  # label-studio-converter's defaults
MAX_PIXELS = 16384 * 16384


def class_regions(mask: np.ndarray, skip: tuple[int, ...] = (BACKGROUND,)) -> dict[int, np.ndarray]:
    """class id -> boolean region, for every id present in ``mask`` except ``skip``."""
    return {int(c): mask == c for c in np.unique(mask) if int(c) not in skip}


def paint(mask: np.ndarray, region: np.ndarray, class_id: int) -> None:
    """Set ``region`` of ``mask`` to ``class_id`` in place (later regions win where they overlap)."""
    if region.shape != mask.shape:
        raise UserError(f"a region of {region.shape[1]}x{region.shape[0]} does not fit a "
                        f"{mask.shape[1]}x{mask.shape[0]} mask")
    mask[region] = class_id


def bbox_of(region: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x, y, w, h)`` in pixels of a boolean region, None when it is empty."""
    ys, xs = np.nonzero(region)
    if xs.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


# COCO RLE ------------------------------------------------------------------------------------


def coco_rle_encode(region: np.ndarray) -> dict:
    """Boolean ``H x W`` -> uncompressed COCO RLE ``{"size": [h, w], "counts": [...]}`` (the layout
    CVAT's "COCO 1.0" export writes for masks)."""
    flat = np.asarray(region, bool).ravel(order="F")
    h, w = region.shape
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(h), int(w)], "counts": [int(c) for c in counts]}


def coco_rle_compress(counts: list[int]) -> str:
    """Run lengths -> pycocotools' compressed counts string (``rleToString``)."""
    out = []
    for i, value in enumerate(counts):
        x = int(value) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def coco_rle_uncompress(text: str) -> list[int]:
    """pycocotools' compressed counts string -> run lengths (``rleFrString``)."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
    counts: list[int] = []
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                raise UserError("COCO RLE counts string is truncated")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise UserError("COCO RLE counts string has a character outside its alphabet")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def coco_rle_decode(segmentation: dict, height: int, width: int) -> np.ndarray:
    """A COCO RLE (either counts form) -> boolean ``height x width``; its size must be the image's."""
    size = segmentation.get("size")
    counts = segmentation.get("counts")
    if not (isinstance(size, list) and len(size) == 2):
        raise UserError("COCO RLE needs 'size': [height, width]")
    h, w = int(size[0]), int(size[1])
    if (h, w) != (int(height), int(width)):
        raise UserError(f"mask is {w}x{h}, the image is {int(width)}x{int(height)}")
    if isinstance(counts, str | bytes):
        counts = coco_rle_uncompress(counts)
    if not isinstance(counts, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        raise UserError("COCO RLE 'counts' must be a list of integers or a compressed string")
    if any(c < 0 for c in counts) or sum(counts) != h * w:
        raise UserError(f"COCO RLE counts do not cover the {w}x{h} image (they sum to {sum(counts)})")
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((w, h)).T.copy()


# polygons ------------------------------------------------------------------------------------


def polygons_from_region(region: np.ndarray) -> list[list[float]]:
    """Boolean region -> outer contours as COCO polygons ``[x1, y1, x2, y2, ...]`` (pixel centres);
    a contour of one or two points is repeated up to three (COCO readers need three)."""
    contours, _ = cv2.findContours(np.asarray(region, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        pts = contour.reshape(-1, 2).tolist()
        while len(pts) < 3:
            pts.append(pts[-1])
        polygons.append([float(v) for xy in pts for v in xy])
    return polygons


def region_from_polygons(polygons: list, height: int, width: int) -> np.ndarray:
    """COCO polygons (pixel coordinates) -> boolean ``height x width`` (``fillPoly``, rounded)."""
    canvas = np.zeros((int(height), int(width)), np.uint8)
    pts = []
    for poly in polygons:
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            raise UserError("a COCO polygon must be a list of at least three x, y pairs")
        try:
            xy = np.asarray(poly, np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            raise UserError("a COCO polygon must hold numbers") from None
        if not np.isfinite(xy).all():
            raise UserError("a COCO polygon has a non-finite coordinate")
        pts.append(np.rint(xy).astype(np.int32))
    if pts:
        cv2.fillPoly(canvas, pts, 1)
    return canvas.astype(bool)


def ls_points_from_polygon(polygon: list[float], height: int, width: int) -> list[list[float]]:
    """One COCO polygon in pixels -> Label Studio ``points`` in percent."""
    xy = np.asarray(polygon, np.float64).reshape(-1, 2)
    return [[round(x * 100.0 / width, 4), round(y * 100.0 / height, 4)] for x, y in xy]


def polygon_from_ls_points(points: list, height: int, width: int) -> list[float]:
    """Label Studio ``points`` (percent) -> one COCO polygon in pixels."""
    try:
        xy = np.asarray(points, np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise UserError("Label Studio polygon 'points' must be [[x, y], ...] numbers") from None
    if len(xy) < 3:
        raise UserError("a Label Studio polygon needs at least three points")
    return [float(v) for x, y in xy for v in (x * width / 100.0, y * height / 100.0)]


# Label Studio brush RLE ----------------------------------------------------------------------


class _BitWriter:
    def __init__(self) -> None:
        self.value = 0
        self.bits = 0

    def write(self, value: int, width: int) -> None:
        self.value = (self.value << width) | (int(value) & ((1 << width) - 1))
        self.bits += width

    def to_bytes(self) -> list[int]:
        pad = 8 - self.bits % 8  # label-studio-converter pads a whole zero byte when already aligned
        total = self.bits + pad
        return list((self.value << pad).to_bytes(total // 8, "big"))


class _BitReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.limit = len(data) * 8

    def read(self, width: int) -> int:
        end = self.pos + width
        if end > self.limit:
            raise UserError("Label Studio brush RLE is truncated")
        first, last = self.pos >> 3, (end + 7) >> 3
        chunk = int.from_bytes(self.data[first:last], "big")
        value = (chunk >> (last * 8 - end)) & ((1 << width) - 1)
        self.pos = end
        return value


def ls_rle_encode(values: np.ndarray) -> list[int]:
    """A flat array of 0..255 values -> Label Studio brush RLE bytes, as label-studio-converter's
    ``encode_rle`` writes them (word size 8, run-length widths 3, 4, 8, 16)."""
    arr = np.asarray(values).ravel()
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
        raise UserError("brush values must lie in 0..255")
    out = _BitWriter()
    out.write(arr.size, 32)
    out.write(8 - 1, 5)
    for width in BRUSH_RUN_WIDTHS:
        out.write(width - 1, 4)
    if arr.size:
        ends = np.append(np.flatnonzero(arr[1:] != arr[:-1]), arr.size - 1)
        lengths = np.diff(np.append(-1, ends))
        for length, value in zip(lengths.tolist(), arr[ends].tolist()):
            if length == 1:
                out.write(0, 1), out.write(0, 2), out.write(0, 3), out.write(value, 8)
                continue
            while length > 1 << 16:
                out.write(1, 1), out.write(3, 2), out.write((1 << 16) - 1, 16), out.write(value, 8)
                length -= 1 << 16
            index = 0 if length <= 8 else 1 if length <= 16 else 2 if length <= 256 else 3
            out.write(1, 1), out.write(index, 2)
            out.write(length - 1, BRUSH_RUN_WIDTHS[index]), out.write(value, 8)
    return out.to_bytes()


def ls_rle_decode(rle: list[int] | bytes, max_values: int = MAX_PIXELS * 4) -> np.ndarray:
    """Label Studio brush RLE bytes -> the flat ``uint8`` values (``decode_rle``)."""
    try:
        data = bytes(rle)
    except (TypeError, ValueError):
        raise UserError("Label Studio brush 'rle' must be a list of bytes (0..255)") from None
    reader = _BitReader(data)
    num = reader.read(32)
    if num > max_values:
        raise UserError(f"Label Studio brush RLE declares {num} values, more than an image holds")
    word = reader.read(5) + 1
    if word > 8:
        raise UserError(f"Label Studio brush RLE word size {word} is not 8-bit")
    widths = [reader.read(4) + 1 for _ in range(4)]
    out = np.zeros(num, np.uint8)
    i = 0
    while i < num:
        is_run = reader.read(1)
        j = i + 1 + reader.read(widths[reader.read(2)])
        if j > num:
            raise UserError("Label Studio brush RLE runs past its declared length")
        if is_run:
            out[i:j] = reader.read(word)
        else:
            out[i:j] = [reader.read(word) for _ in range(j - i)]
        i = j
    return out


def brush_from_region(region: np.ndarray) -> list[int]:
    """Boolean region -> Label Studio brush RLE (RGBA all 255 inside, 0 outside; ``mask2rle``)."""
    layer = np.asarray(region, bool).astype(np.uint8) * 255
    return ls_rle_encode(np.repeat(layer.ravel(), 4))


def region_from_brush(rle: list[int], height: int, width: int) -> np.ndarray:
    """Label Studio brush RLE -> boolean ``height x width`` (alpha channel at least 128)."""
    flat = ls_rle_decode(rle)
    if flat.size != int(height) * int(width) * 4:
        raise UserError(f"brush mask holds {flat.size // 4} pixels, the image is {int(width)}x{int(height)} "
                        f"({int(width) * int(height)} pixels)")
    return flat.reshape(int(height), int(width), 4)[:, :, 3] >= 128
