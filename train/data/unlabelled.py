"""Unlabelled visible/thermal pairs for ``msmine pretrain``: image folders, clip pairs, pulled sets.

A source is one of

* a folder of pairs: ``visible/`` + ``infrared/`` (or ``thermal/``, ``lwir/``, ``ir/``), paired by
  file name (:func:`msmine.sources.match_folders`);
* a dataset root whose split folders hold such pairs (``msrs/``, the folder ``msmine pull`` wrote):
  every split except ``test``, which is left out;
* a clip pair: a folder with ``visible.<video>`` + ``infrared.<video>`` (or ``thermal.<video>``);
  frame i of both files is one pair, every ``clip_stride``-th frame is taken (OpenCV);
* a folder of clip folders (``m3svd/``);
* a camera-pair spec ``visible=SRC,thermal=SRC`` naming two image folders or two video files
  (:mod:`msmine.sources`; live cameras are refused).

Test images are never pre-trained on: a source folder named ``test`` (a test split) is refused in
one line, and so is any source that holds an id of a test split: the ``test`` split next to a
source's split folder, and every folder in ``test_sets`` (MSRS's ``test/`` by default, see
configs/pretrain_lite0.yaml). Pairs are letterboxed to the network input once and kept in memory
(``pairs x H x W x 4`` bytes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from msmine.errors import UserError
from msmine.letterbox import letterbox
from msmine.sources import folder_images, is_camera_pair, match_folders, parse_cameras, parse_source

log = logging.getLogger(__name__)

THERMAL_DIRS = ("infrared", "thermal", "lwir", "ir")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v")
TEST_SPLIT = "test"


@dataclass(frozen=True)
class PairRef:
    """One unlabelled pair: two image files, or frame ``frame`` of two video files."""

    source: str  # the source it came from (as given)
    pair_id: str  # file stem, or <clip>#<frame>
    visible: Path
    thermal: Path
    frame: int = -1  # -1: image files


def _thermal_dir(folder: Path) -> Path | None:
    for name in THERMAL_DIRS:
        if (folder / name).is_dir():
            return folder / name
    return None


def is_pair_folder(folder: Path) -> bool:
    return (folder / "visible").is_dir() and _thermal_dir(folder) is not None


def _clip_files(folder: Path) -> tuple[Path, Path] | None:
    def find(stems):
        for stem in stems:
            for suffix in VIDEO_SUFFIXES:
                if (folder / f"{stem}{suffix}").is_file():
                    return folder / f"{stem}{suffix}"
        return None

    vis, thr = find(("visible",)), find(("infrared", "thermal", "lwir"))
    return (vis, thr) if vis is not None and thr is not None else None


def _refuse_test(folder: Path, given: str) -> None:
    if folder.name == TEST_SPLIT:
        raise UserError(f"--data {given}: {folder} is a test split; test images are never pre-trained on "
                        f"(name the train split or a folder of unlabelled pairs)")


def _image_pairs(visible: Path, thermal: Path, given: str) -> list[PairRef]:
    match = match_folders(visible, thermal)
    return [PairRef(given, v.stem, v, t) for v, t in zip(match.visible, match.thermal)]


def _clip_pairs(visible: Path, thermal: Path, given: str, stride: int, name: str) -> list[PairRef]:
    counts = []
    for path in (visible, thermal):
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise UserError(f"--data {given}: cannot open video {path}")
        counts.append(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        cap.release()
    frames = min(counts)
    if counts[0] != counts[1]:
        log.warning("%s: %d visible vs %d thermal frames; using the first %d", given, counts[0], counts[1], frames)
    return [PairRef(given, f"{name}#{i:06d}", visible, thermal, i) for i in range(0, max(frames, 0), stride)]


def _split_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and is_pair_folder(p))


def _clip_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and _clip_files(p) is not None)


def resolve_source(given: str, clip_stride: int = 5) -> tuple[list[PairRef], list[Path]]:
    """(pairs, folders whose ids must not be test ids) of one ``--data`` source."""
    if clip_stride < 1:
        raise UserError(f"data.clip_stride must be >= 1, got {clip_stride}")
    if is_camera_pair(given):
        specs = {cam: parse_source(cam, spec) for cam, spec in parse_cameras(given, "--data").items()}
        kinds = {s.kind for s in specs.values()}
        if kinds == {"folder"}:
            vis, thr = Path(specs["visible"].target), Path(specs["thermal"].target)
            _refuse_test(vis.parent, given)
            _refuse_test(thr.parent, given)
            return _image_pairs(vis, thr, given), [vis.parent]
        if kinds == {"file"}:
            vis, thr = Path(specs["visible"].target), Path(specs["thermal"].target)
            return _clip_pairs(vis, thr, given, clip_stride, vis.parent.name or vis.stem), []
        raise UserError(f"--data {given}: pre-training reads two image folders or two video files "
                        f"(got {', '.join(sorted(kinds))})")
    root = Path(given).expanduser()
    if not root.is_dir():
        raise UserError(f"--data {given}: no such folder")
    _refuse_test(root, given)
    if is_pair_folder(root):
        return _image_pairs(root / "visible", _thermal_dir(root), given), [root]
    clip = _clip_files(root)
    if clip is not None:
        return _clip_pairs(*clip, given, clip_stride, root.name), []
    splits = _split_folders(root)
    if splits:
        kept = [s for s in splits if s.name != TEST_SPLIT]
        if len(kept) < len(splits):
            log.info("%s: split %r left out (test images are never pre-trained on)", given, TEST_SPLIT)
        pairs: list[PairRef] = []
        for split in kept:
            pairs += _image_pairs(split / "visible", _thermal_dir(split), given)
        return pairs, kept
    clips = _clip_folders(root)
    if clips:
        pairs = []
        for folder in clips:
            pairs += _clip_pairs(*_clip_files(folder), given, clip_stride, folder.name)
        return pairs, []
    raise UserError(f"--data {given}: no unlabelled pairs found (expected visible/ + infrared/ folders, split "
                    f"folders holding them, or visible.mp4 + infrared.mp4 clip folders)")


def test_ids(folders) -> dict[str, Path]:
    """pair id -> the test folder holding it, over every ``folder`` that exists (a split root or its visible/)."""
    ids: dict[str, Path] = {}
    for folder in folders:
        folder = Path(folder).expanduser()
        visible = folder / "visible" if (folder / "visible").is_dir() else folder
        if not visible.is_dir():
            log.debug("test set %s not found; its ids are not checked", folder)
            continue
        for path in folder_images(visible):
            ids.setdefault(path.stem, folder)
    return ids


def collect_pairs(sources, clip_stride: int = 5, test_sets=(), limit: int = 0) -> list[PairRef]:
    """Every pair of every source (at most ``limit`` per source, evenly spaced, when > 0); a UserError
    when a source holds a test id (see the module doc)."""
    if not sources:
        raise UserError("no unlabelled pairs: give --data DIR (repeatable) or data.sources in the config")
    pairs: list[PairRef] = []
    forbidden_folders = [Path(t) for t in test_sets]
    for given in sources:
        found, folders = resolve_source(str(given), clip_stride)
        siblings = [f.parent / TEST_SPLIT for f in folders if (f.parent / TEST_SPLIT).is_dir()]
        forbidden = test_ids([*forbidden_folders, *siblings])
        hits = [p.pair_id for p in found if p.frame < 0 and p.pair_id in forbidden]
        if hits:
            raise UserError(f"--data {given}: {len(hits)} pair(s) share ids with the test set "
                            f"{forbidden[hits[0]]} (first: {hits[0]}); test images are never pre-trained on")
        if 0 < limit < len(found):
            found = [found[int(i)] for i in np.linspace(0, len(found) - 1, limit).round().astype(int)]
        log.info("%s: %d unlabelled pairs", given, len(found))
        pairs += found
    if not pairs:
        raise UserError("no unlabelled pairs in the given sources")
    return pairs


def _read_frames(refs: list[PairRef], size: tuple[int, int]) -> dict[PairRef, tuple[np.ndarray, np.ndarray]]:
    """Decode the wanted frames of one clip pair in one sequential pass."""
    wanted = {r.frame: r for r in refs}
    last = max(wanted)
    caps = [cv2.VideoCapture(str(refs[0].visible)), cv2.VideoCapture(str(refs[0].thermal))]
    out = {}
    try:
        for i in range(last + 1):
            ok_v, v = caps[0].read()
            ok_t, t = caps[1].read()
            if not (ok_v and ok_t):
                break
            if i in wanted:
                out[wanted[i]] = _letterboxed(cv2.cvtColor(v, cv2.COLOR_BGR2RGB), cv2.cvtColor(t, cv2.COLOR_BGR2GRAY),
                                              size)
    finally:
        for cap in caps:
            cap.release()
    return out


def _letterboxed(visible: np.ndarray, thermal: np.ndarray, size) -> tuple[np.ndarray, np.ndarray]:
    if thermal.ndim == 3:
        thermal = thermal[:, :, 0]
    if thermal.shape[:2] != visible.shape[:2]:  # registered pairs of different resolutions: thermal to visible
        thermal = cv2.resize(thermal, (visible.shape[1], visible.shape[0]), interpolation=cv2.INTER_LINEAR)
    v, _, _ = letterbox(visible, size)
    t, _, _ = letterbox(thermal[:, :, None], size)
    return np.ascontiguousarray(v), np.ascontiguousarray(t.reshape(size[0], size[1], 1))


class UnlabelledPairs:
    """The pairs letterboxed to ``size`` (H, W), decoded once: ``visible`` (N, H, W, 3) and
    ``thermal`` (N, H, W, 1) uint8 arrays; ``ids`` and ``sources`` per pair."""

    def __init__(self, refs: list[PairRef], size: tuple[int, int], progress: bool = False):
        from msmine.train.data.imageio import read_thermal, read_visible
        from msmine.train.progress import progress_bar

        h, w = int(size[0]), int(size[1])
        self.visible = np.zeros((len(refs), h, w, 3), np.uint8)
        self.thermal = np.zeros((len(refs), h, w, 1), np.uint8)
        self.ids = [r.pair_id for r in refs]
        self.sources = [r.source for r in refs]
        index = {r: i for i, r in enumerate(refs)}
        clips: dict[tuple[Path, Path], list[PairRef]] = {}
        bar = progress_bar(total=len(refs), desc="decode")
        try:
            for r in refs:
                if r.frame >= 0:
                    clips.setdefault((r.visible, r.thermal), []).append(r)
                    continue
                v, t = _letterboxed(read_visible(r.visible), read_thermal(r.thermal), (h, w))
                self.visible[index[r]], self.thermal[index[r]] = v, t
                bar.update(1)
            for clip_refs in clips.values():
                got = _read_frames(clip_refs, (h, w))
                if len(got) < len(clip_refs):
                    log.warning("%s: %d of %d sampled frames could not be decoded", clip_refs[0].source,
                                len(clip_refs) - len(got), len(clip_refs))
                for r, (v, t) in got.items():
                    self.visible[index[r]], self.thermal[index[r]] = v, t
                bar.update(len(clip_refs))
        finally:
            bar.close()

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, indices, rng: np.random.Generator | None = None, scale: tuple[float, float] = (0.5, 1.0),
              flip: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (B, H, W, 3) and (B, H, W, 1); with ``rng`` a random crop (area ``scale``, aspect
        kept) resized back and a horizontal flip, the same on both images of a pair."""
        vis = self.visible[list(indices)].copy()
        thr = self.thermal[list(indices)].copy()
        if rng is None:
            return vis, thr
        h, w = vis.shape[1:3]
        for b in range(len(vis)):
            s = float(np.sqrt(rng.uniform(*scale)))
            ch, cw = max(8, int(round(h * s))), max(8, int(round(w * s)))
            y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            if (ch, cw) != (h, w):
                vis[b] = cv2.resize(vis[b, y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
                thr[b, :, :, 0] = cv2.resize(thr[b, y0:y0 + ch, x0:x0 + cw, 0], (w, h), interpolation=cv2.INTER_LINEAR)
            if flip and rng.random() < 0.5:
                vis[b], thr[b] = vis[b, :, ::-1], thr[b, :, ::-1]
        return vis, thr
