"""Camera-pair source specs, parsed once for every command (``edge-runtime --cameras``,
``msmine calibrate threshold --source``); stdlib only.

``visible=SRC,thermal=SRC`` names one source per camera; a source is:

* a V4L2 index (``0``) or device path (``/dev/video2``)               -> ``device`` (live)
* an RTSP/HTTP URL (``rtsp://10.0.0.5/stream``)                        -> ``url`` (live)
* ``synthetic`` (``synthetic?fps=9&seed=3&size=640x480&frames=900``)   -> ``synthetic``
* a folder of images (``frames/visible`` or ``frames/visible?fps=9``)  -> ``folder``
* a video file (``clip/visible.mp4``)                                  -> ``file``
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from msmine.errors import UserError

CAMERAS = ("visible", "thermal")
URL_RE = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp)://", re.IGNORECASE)
LIVE_KINDS = ("device", "url")


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
