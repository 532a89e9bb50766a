"""Camera pairs from disk, made the exported model's inputs the way the device makes them (no torch).

Sources (``--source`` of ``msmine calibrate threshold``, ``--calib-data`` of ``msmine export``):

* the device's camera-pair spec ``visible=SRC,thermal=SRC`` (:func:`msmine.sources.parse_cameras`,
  what ``edge-runtime --cameras`` takes) with two video files (frame i of both is one pair) or two
  image folders (paired by file name like the device, :func:`msmine.sources.match_folders`; e.g.
  LLVIP's ``visible/test`` + ``infrared/test``);
* a folder of pairs: ``DIR/visible/<id>.<jpg|png>`` + ``DIR/infrared/<id>.<jpg|png>`` (an MSRS split
  folder; the names in any case, ``thermal/`` also accepted), a dataset root with
  ``DIR/<split>/visible`` (``split`` picks it), or the LLVIP order ``DIR/visible/<split>``;
* a clip: ``DIR/visible.mp4`` + ``DIR/infrared.mp4`` (M3SVD layout).

``to_model_inputs`` is :func:`msmine.feeds.feeds` (the registration warp when given, the visible
image brought to the thermal grid, both letterboxed) as a batch of one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from msmine.errors import UserError
from msmine.feeds import Warp, feeds
from msmine.sources import folder_images, is_camera_pair, match_folders, parse_cameras, parse_source

log = logging.getLogger(__name__)

VISIBLE_NAMES = ("visible",)
THERMAL_NAMES = ("infrared", "thermal")


def to_model_inputs(visible: np.ndarray, thermal: np.ndarray, input_size: tuple[int, int],
                    warp: Warp | None = None) -> dict[str, np.ndarray]:
    """One pair (RGB H x W x 3, thermal H x W or H x W x 1, uint8) -> {"visible", "thermal"} batch of 1."""
    return feeds(visible, thermal, input_size, warp, rgb=True).as_batch()


def _read(path: Path, gray: bool) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"cannot decode image: {path}")
    return img[:, :, None] if gray else img[:, :, ::-1].copy()


def _index(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in folder_images(folder)}


def _child(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The sub-folder of ``folder`` called one of ``names``, in any letter case."""
    if not folder.is_dir():
        return None
    found = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    return next((found[n] for n in names if n in found), None)


def pair_folders(source: str | Path, split: str = "test") -> tuple[Path, Path]:
    """(visible folder, thermal folder) of a pair folder, a dataset root or an LLVIP-style root."""
    source = Path(source)
    for base in (source, source / split):
        vis, th = _child(base, VISIBLE_NAMES), _child(base, THERMAL_NAMES)
        if vis is not None and th is not None:
            if _index(vis) or not (_child(vis, (split,)) and _child(th, (split,))):
                return vis, th
            return _child(vis, (split,)), _child(th, (split,))  # LLVIP: visible/<split>, infrared/<split>
    raise UserError(f"{source}: expected visible/ and infrared/ folders (or {split}/visible, {split}/infrared, "
                    f"visible/{split}, infrared/{split}), or pass --source visible=DIR,thermal=DIR")


def _iter_folders(vis_dir: Path, th_dir: Path, limit: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Pairs of two image folders, matched by file name as the device matches them (never by position)."""
    match = match_folders(vis_dir, th_dir)
    if not match.visible:
        raise UserError(f"{vis_dir} and {th_dir}: no image pairs (no file name appears in both folders)")
    for i, (vis, th) in enumerate(zip(match.visible, match.thermal)):
        if limit and i >= limit:
            return
        yield vis.stem, _read(vis, False), _read(th, True)


def iter_folder_pairs(source: str | Path, split: str = "test", limit: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(id, visible RGB, thermal H x W x 1) for the ids present in both folders, sorted."""
    return _iter_folders(*pair_folders(source, split), limit)


def _iter_videos(vis_path: Path, th_path: Path, limit: int = 0,
                 stride: int = 1) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    paths = [Path(vis_path), Path(th_path)]
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


def iter_clip_pairs(source: str | Path, limit: int = 0, stride: int = 1) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(frame index, visible RGB, thermal H x W x 1) from ``visible.mp4`` + ``infrared.mp4``."""
    source = Path(source)
    return _iter_videos(source / "visible.mp4", source / "infrared.mp4", limit, stride)


def _camera_pair_paths(text: str) -> tuple[str, Path, Path]:
    """A ``visible=SRC,thermal=SRC`` spec of recorded pairs -> (kind, visible path, thermal path)."""
    specs = {cam: parse_source(cam, spec) for cam, spec in parse_cameras(text, "--source").items()}
    kinds = {s.kind for s in specs.values()}
    if kinds - {"file", "folder"}:
        raise UserError(f"--source {text!r}: calibration needs recorded pairs (two video files or two image "
                        f"folders), not {', '.join(sorted(kinds - {'file', 'folder'}))} sources")
    if len(kinds) != 1:
        raise UserError(f"--source {text!r}: both cameras must be video files or both image folders")
    return kinds.pop(), Path(specs["visible"].target), Path(specs["thermal"].target)


def iter_camera_pairs(text: str, limit: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Pairs of a ``visible=SRC,thermal=SRC`` spec (video files: by frame; folders: by file name)."""
    kind, vis, th = _camera_pair_paths(text)
    return _iter_videos(vis, th, limit) if kind == "file" else _iter_folders(vis, th, limit)


def _video_fps(path: Path) -> float:
    cap = cv2.VideoCapture(str(path))
    try:
        return float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def clip_fps(source: str | Path) -> float:
    return _video_fps(Path(source) / "visible.mp4")


def source_fps(source: str | Path) -> float | None:
    """The pair rate of a recorded video source (clip folder or two files), None for images."""
    text = str(source)
    if is_camera_pair(text):
        kind, vis, _ = _camera_pair_paths(text)
        return (_video_fps(vis) or None) if kind == "file" else None
    if (Path(source) / "visible.mp4").is_file():
        return clip_fps(source) or None
    return None


def iter_pairs(source: str | Path, split: str = "test", limit: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Pairs from a camera-pair spec, a clip folder (visible.mp4 present) or a folder of images."""
    if is_camera_pair(str(source)):
        return iter_camera_pairs(str(source), limit)
    source = Path(source)
    if not source.exists():
        raise UserError(f"source not found: {source}")
    if (source / "visible.mp4").is_file():
        return iter_clip_pairs(source, limit)
    return iter_folder_pairs(source, split, limit)
