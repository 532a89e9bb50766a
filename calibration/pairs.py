"""Camera pairs from disk, prepared as the exported model's inputs (numpy + OpenCV, no torch).

Sources:

* a folder of pairs: ``DIR/visible/<id>.<jpg|png>`` + ``DIR/infrared/<id>.<jpg|png>`` (an MSRS
  split folder), or a dataset root with ``DIR/<split>/visible`` (``split`` picks it);
* a clip: ``DIR/visible.mp4`` + ``DIR/infrared.mp4`` (frame i of both is one pair, M3SVD layout).

``to_model_inputs`` letterboxes a pair to the model's (H, W) keeping the aspect ratio and returns
the uint8 NHWC arrays the ONNX contract expects (``visible`` [1, H, W, 3] RGB, ``thermal``
[1, H, W, 1]).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from msmine.errors import UserError
from msmine.letterbox import letterbox as shared_letterbox
from msmine.letterbox import letterbox_geometry as shared_geometry

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
PAD_VALUE = 0  # letterbox padding, the same for both modalities (the trainer's letterbox pads with 0)


def letterbox_geometry(height: int, width: int, out_size: tuple[int, int]) -> tuple[float, tuple[int, int]]:
    """(scale, (pad_x, pad_y)) of the letterbox of a height x width image to out_size (H, W)."""
    scale, pad, _ = shared_geometry(height, width, out_size)
    return scale, pad


def letterbox(image: np.ndarray, out_size: tuple[int, int], pad_value: int = PAD_VALUE):
    """Resize keeping the aspect ratio, pad to ``out_size`` (H, W) centred (:mod:`msmine.letterbox`).

    Returns (image, scale, (pad_x, pad_y)): a source pixel x maps to ``x * scale + pad_x``.
    """
    return shared_letterbox(image, out_size, fill=pad_value)


def to_model_inputs(visible: np.ndarray, thermal: np.ndarray, input_size: tuple[int, int]) -> dict[str, np.ndarray]:
    """One pair (RGB H x W x 3, thermal H x W or H x W x 1, uint8) -> {"visible", "thermal"} batch of 1."""
    if thermal.ndim == 2:
        thermal = thermal[:, :, None]
    vis, _, _ = letterbox(visible, input_size)
    th, _, _ = letterbox(thermal, input_size)
    return {"visible": vis[None].astype(np.uint8), "thermal": th[None].astype(np.uint8)}


def _read(path: Path, gray: bool) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"cannot decode image: {path}")
    return img[:, :, None] if gray else img[:, :, ::-1].copy()


def _index(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def pair_folder(source: str | Path, split: str = "test") -> Path:
    """The folder holding ``visible/`` and ``infrared/`` for a pair folder or a dataset root."""
    source = Path(source)
    if (source / "visible").is_dir() and (source / "infrared").is_dir():
        return source
    if (source / split / "visible").is_dir() and (source / split / "infrared").is_dir():
        return source / split
    raise UserError(f"{source}: expected visible/ and infrared/ folders (or {split}/visible, {split}/infrared)")


def iter_folder_pairs(source: str | Path, split: str = "test", limit: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(id, visible RGB, thermal H x W x 1) for the ids present in both folders, sorted."""
    folder = pair_folder(source, split)
    vis, th = _index(folder / "visible"), _index(folder / "infrared")
    ids = sorted(set(vis) & set(th))
    if not ids:
        raise UserError(f"{folder}: no image pairs (same file stem in visible/ and infrared/)")
    for i, pair_id in enumerate(ids):
        if limit and i >= limit:
            return
        yield pair_id, _read(vis[pair_id], False), _read(th[pair_id], True)


def iter_clip_pairs(source: str | Path, limit: int = 0, stride: int = 1) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(frame index, visible RGB, thermal H x W x 1) from ``visible.mp4`` + ``infrared.mp4``."""
    source = Path(source)
    paths = [source / "visible.mp4", source / "infrared.mp4"]
    for p in paths:
        if not p.is_file():
            raise UserError(f"clip file not found: {p}")
    caps = [cv2.VideoCapture(str(p)) for p in paths]
    try:
        for p, cap in zip(paths, caps):
            if not cap.isOpened():
                raise UserError(f"cannot open video: {p}")
        frame, yielded = 0, 0
        while True:
            ok_v, vis = caps[0].read()
            ok_t, th = caps[1].read()
            if not (ok_v and ok_t):
                return
            if frame % max(stride, 1) == 0:
                yield f"{frame:06d}", vis[:, :, ::-1].copy(), cv2.cvtColor(th, cv2.COLOR_BGR2GRAY)[:, :, None]
                yielded += 1
                if limit and yielded >= limit:
                    return
            frame += 1
    finally:
        for cap in caps:
            cap.release()


def clip_fps(source: str | Path) -> float:
    cap = cv2.VideoCapture(str(Path(source) / "visible.mp4"))
    try:
        return float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def iter_pairs(source: str | Path, split: str = "test", limit: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Pairs from a clip folder (visible.mp4 present) or a folder of images."""
    source = Path(source)
    if not source.exists():
        raise UserError(f"source not found: {source}")
    if (source / "visible.mp4").is_file():
        return iter_clip_pairs(source, limit)
    return iter_folder_pairs(source, split, limit)
