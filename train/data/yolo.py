"""YOLO label text files (`class cx cy w h`, normalised) and class-name lists.

Reading is deliberately forgiving about whitespace (double spaces, tabs, CRLF, blank lines, no trailing
newline, empty files) and about geometry (boxes are clipped to the image; degenerate ones are dropped),
but strict about content: a non-numeric field, a wrong field count or an unknown class id raises
:class:`UserError` naming the file and the line.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from msmine.errors import UserError
from msmine.layout import read_class_names, write_class_names  # noqa: F401 (re-exported: msmine.train.data)
from msmine.train.data.sample import clip_and_filter, empty_boxes

log = logging.getLogger(__name__)


def parse_yolo_text(
    text: str, image_size: tuple[int, int], num_classes: int | None, source: str = "<text>"
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [M, 4] float32 x1 y1 x2 y2 in pixels and labels [M] int64 from YOLO label text.

    image_size is (height, width). `source` names the file in error messages.
    """
    height, width = image_size
    rows: list[list[float]] = []
    classes: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise UserError(
                f"{source}, line {number}: expected 5 fields 'class cx cy w h', got {len(fields)}: {line.strip()!r}"
            )
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise UserError(f"{source}, line {number}: non-numeric field in {line.strip()!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise UserError(f"{source}, line {number}: non-finite value in {line.strip()!r}")
        class_value = values[0]
        if class_value != int(class_value) or class_value < 0:
            raise UserError(f"{source}, line {number}: class id must be a non-negative integer, got {fields[0]!r}")
        class_id = int(class_value)
        if num_classes is not None and class_id >= num_classes:
            raise UserError(
                f"{source}, line {number}: class id {class_id} out of range (dataset has {num_classes} classes)"
            )
        cx, cy, w, h = values[1:]
        rows.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
        classes.append(class_id)
    if not rows:
        return empty_boxes()
    boxes, labels = clip_and_filter(np.array(rows, np.float32), np.array(classes, np.int64), width, height)
    if len(boxes) < len(rows):
        log.debug("%s: dropped %d degenerate box(es) after clipping", source, len(rows) - len(boxes))
    return boxes, labels


def read_yolo_labels(
    path: Path, image_size: tuple[int, int], num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one YOLO label file; image_size is (height, width). Missing file -> UserError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"missing label file: {path}") from None
    except UnicodeDecodeError:
        raise UserError(f"label file is not UTF-8 text (corrupt?): {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read label file {path}: {exc.strerror}") from None
    return parse_yolo_text(text, image_size, num_classes, source=str(path))


def write_yolo_labels(
    path: Path, boxes: np.ndarray, labels: np.ndarray, image_size: tuple[int, int]
) -> None:
    """Write boxes (x1 y1 x2 y2 pixels) as a YOLO label file; image_size is (height, width).

    Boxes are clipped to the image and degenerate ones (zero width or height) are skipped, so the file
    reads back with :func:`read_yolo_labels`. The parent folder is created. No boxes -> an empty file.
    """
    height, width = image_size
    if height <= 0 or width <= 0:
        raise ValueError(f"image_size must be positive (height, width), got {image_size}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    if len(boxes) != len(labels):
        raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels")
    boxes = boxes.copy()
    np.clip(boxes[:, 0::2], 0.0, width, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0.0, height, out=boxes[:, 1::2])
    lines = []
    for (x1, y1, x2, y2), label in zip(boxes, labels):
        if x2 <= x1 or y2 <= y1:
            continue
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        w, h = (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"{int(label)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")


