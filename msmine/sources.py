"""Camera-pair source specs, parsed once for every command (``edge-runtime --cameras``,
``msmine calibrate threshold --source``); stdlib only.

``visible=SRC,thermal=SRC`` names one source per camera; a source is:

* a V4L2 index (``0``) or device path (``/dev/video2``)               -> ``device`` (live)
* an RTSP/HTTP URL (``rtsp://10.0.0.5/stream``)                        -> ``url`` (live)
* ``synthetic`` (``synthetic?fps=9&seed=3&size=640x480&frames=900``)   -> ``synthetic``
* a folder of images (``frames/visible`` or ``frames/visible?fps=9``)  -> ``folder``
* a video file (``clip/visible.mp4``)                                  -> ``file``

Two image folders are paired by file name, never by position (:func:`match_folders`): the same
stem, or the same stem once camera words are removed (``0001_vis.png`` + ``0001_ir.png``); files
without a partner are reported and left out. The device and calibration both pair this way.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from msmine.errors import UserError

CAMERAS = ("visible", "thermal")
URL_RE = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp)://", re.IGNORECASE)
LIVE_KINDS = ("device", "url")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}

log = logging.getLogger(__name__)


def parse_cameras(text: str, flag: str = "--cameras") -> dict[str, str]:
    """``"visible=a.mp4,thermal=b.mp4"`` -> ``{"visible": "a.mp4", "thermal": "b.mp4"}``."""
    parts = re.split(r",(?=\s*(?:visible|thermal)\s*=)", text or "")
    specs: dict[str, str] = {}
    for part in parts:
        name, sep, src = part.partition("=")
        name = name.strip()
        if not sep or name not in CAMERAS or not src.strip():
            raise UserError(f"bad {flag} {text!r}: expected visible=SRC,thermal=SRC")
        if name in specs:
            raise UserError(f"bad {flag} {text!r}: {name} given twice")
        specs[name] = src.strip()
    if set(specs) != set(CAMERAS):
        raise UserError(f"bad {flag} {text!r}: both visible=SRC and thermal=SRC are needed")
    return specs


def is_camera_pair(text: str) -> bool:
    """Does ``text`` look like ``visible=SRC,thermal=SRC`` (rather than a path)?"""
    return bool(re.match(r"\s*(visible|thermal)\s*=", text or ""))


@dataclass
class SourceSpec:
    """One camera's source, classified."""

    spec: str  # as given
    kind: str  # device | url | synthetic | folder | file
    target: str  # the URL, device path or index, file or folder path
    options: dict[str, str] = field(default_factory=dict)  # ?key=value options (fps, seed, size, frames)

    @property
    def live(self) -> bool:
        return self.kind in LIVE_KINDS


def parse_source(camera: str, spec: str) -> SourceSpec:
    """Classify one camera's source; a path that names nothing is a UserError."""
    if URL_RE.match(spec):
        return SourceSpec(spec, "url", spec)
    base, _, query = spec.partition("?")
    opts = dict(parse_qsl(query))
    if base == "synthetic":
        return SourceSpec(spec, "synthetic", base, opts)
    if base.isdigit() or base.startswith("/dev/"):
        return SourceSpec(spec, "device", base, opts)
    path = Path(base).expanduser()
    if path.is_dir():
        return SourceSpec(spec, "folder", str(path), opts)
    if path.is_file():
        return SourceSpec(spec, "file", str(path), opts)
    raise UserError(f"{camera} camera {spec!r}: no such file, folder or device")


# ---- two image folders, paired by file name (never by position) ---------------------------------

def folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


_CAMERA_WORDS = re.compile(
    r"(?<![a-z])(visible|vis|rgb|color|colour|ir|infrared|thermal|lwir|tir|nir)(?![a-z])")


def _match_key(stem: str) -> str:
    """A file stem without its camera words and separators (``0001_vis`` -> ``0001``)."""
    key = _CAMERA_WORDS.sub("", stem.lower())
    return re.sub(r"[\s_.-]+", "_", key).strip("_")


@dataclass
class FolderMatch:
    """Two image folders paired by file name."""

    visible: list[Path]  # matched files, in name order
    thermal: list[Path]  # their partners, same order
    unmatched: dict[str, list[str]]  # camera -> names without a partner
    by: str  # "name" (same stems) or "name without camera words"

    def report(self) -> dict:
        return {"matched": len(self.visible), "unmatched": {c: len(v) for c, v in self.unmatched.items()},
                "matched_by": self.by}


def match_folders(visible: Path, thermal: Path) -> FolderMatch:
    """Pair the images of two folders by file name (see the module doc); never by position."""
    files = {"visible": folder_images(visible), "thermal": folder_images(thermal)}
    best: FolderMatch | None = None
    for by, key in (("name", lambda p: p.stem), ("name without camera words", lambda p: _match_key(p.stem))):
        keyed: dict[str, dict[str, Path]] = {}
        for cam, paths in files.items():
            keyed[cam] = {}
            for p in paths:
                keyed[cam].setdefault(key(p), p)  # two files with one key: the first (name order) pairs
        common = sorted(set(keyed["visible"]) & set(keyed["thermal"]))
        vis = [keyed["visible"][k] for k in common]
        thr = [keyed["thermal"][k] for k in common]
        used = {"visible": set(vis), "thermal": set(thr)}
        unmatched = {cam: [p.name for p in paths if p not in used[cam]] for cam, paths in files.items()}
        match = FolderMatch(vis, thr, unmatched, by)
        if best is None or len(match.visible) > len(best.visible):
            best = match
        if unmatched["visible"] == [] and unmatched["thermal"] == []:
            break
    assert best is not None
    n_un = {c: len(v) for c, v in best.unmatched.items()}
    if any(n_un.values()):
        first = [f"{c}/{n}" for c in CAMERAS for n in best.unmatched[c][:3]]
        log.warning("image folders: %d pair(s) matched by %s; left out %d visible and %d thermal file(s) without a "
                    "partner (first: %s)", len(best.visible), best.by, n_un["visible"], n_un["thermal"],
                    ", ".join(first))
    else:
        log.info("image folders: %d pair(s) matched by %s", len(best.visible), best.by)
    return best
