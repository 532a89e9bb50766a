"""Camera sources and their capture threads.

A source spec names where one camera's frames come from:

* a V4L2 index (``0``) or device path (``/dev/video2``)           -> live
* an RTSP/HTTP URL (``rtsp://10.0.0.5/stream``)                    -> live
* a video file (``clip/visible.mp4``)                              -> replay
* a folder of images (``frames/visible`` or ``frames/visible?fps=9``) -> replay, sorted by name
* ``synthetic`` (``synthetic?fps=9&seed=3&size=640x480&frames=900``) -> replay of the built-in scene

Every frame gets a capture timestamp ``t``: the host clock (unix seconds) for live cameras; the
media clock (file timestamp, or index / fps) for replays, so that as-fast-as-possible replay still
pairs frame i of one file with frame i of the other. A replayed frame's capture time (``wall``, what
manifests record) is never later than the moment it is read: a paced replay starts now, an
as-fast-as-possible one is placed so that it ends when the replay starts (its start minus its length),
one origin for both cameras. A :class:`CaptureThread` reads one source,
paces replays with ``--realtime``, and reopens a lost live camera with exponential backoff.

Two image folders are paired by file name, never by position: ``0001.png`` meets ``0001.png``
(or ``0001_vis.png`` meets ``0001_ir.png``: camera words such as vis/rgb/ir/thermal/lwir are
ignored when the plain names do not match). Files without a partner are left out and reported in
one line (counts and the first names). Folders without a frame rate (no ``?fps=``) are *stills*:
unrelated images, so the selector applies no temporal suppression to them; ``?fps=N`` says the
folder is a video's frames at N fps (timestamps index / N, temporal suppression as for video).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl

import cv2
import numpy as np

from msmine.edge_runtime.synthetic import SyntheticScene
from msmine.errors import UserError
from msmine.sources import (  # noqa: F401 (the one parser of camera-pair specs and folder pairing, re-exported)
    CAMERAS,
    IMAGE_SUFFIXES,
    URL_RE,
    FolderMatch,
    folder_images,
    match_folders,
    parse_cameras,
)

log = logging.getLogger(__name__)



@dataclass
class Frame:
    camera: str  # "visible" or "thermal"
    index: int  # sequence number of this camera's frames (continues across reopens)
    t: float  # capture clock in seconds: host clock for live cameras, media clock for replays
    wall: float  # unix time of the capture (what manifests record)
    image: np.ndarray  # H x W x 3 BGR or H x W grey, uint8


END = object()  # sentinel a capture thread puts on its queue when its stream ends


class CameraLost(Exception):
    """A live camera stopped delivering frames (unplugged, network down)."""


class FrameSource(Protocol):
    live: bool  # live camera (host clock, drop when behind) or replay (media clock, back-pressure)
    fps: float  # nominal frame rate (0 if unknown)
    description: str

    def read(self) -> tuple[np.ndarray, float] | None:
        """Next (image, media time in s) or None at the end; raises CameraLost for a lost live camera."""

    def close(self) -> None: ...


class VideoSource:
    """A cv2.VideoCapture over a device, URL or video file."""

    def __init__(self, target: str | int, live: bool) -> None:
        self.description = str(target)
        self.live = live
        self._cap = cv2.VideoCapture(target)
        if not self._cap.isOpened():
            raise CameraLost(f"cannot open {target}")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        frames = float(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
        self.length_s = frames / self.fps if not live and self.fps > 0 and frames > 0 else 0.0  # 0: unknown
        self._index = 0
        self._last_t = -1.0

    def read(self) -> tuple[np.ndarray, float] | None:
        ok, image = self._cap.read()
        if not ok or image is None:
            if self.live:
                raise CameraLost(f"{self.description}: read failed")
            return None
        t = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if self.fps > 0 and t <= self._last_t:  # backends without timestamps: use the frame index
            t = self._index / self.fps
        self._last_t = t
        self._index += 1
        return image, t

    def close(self) -> None:
        self._cap.release()


class FolderSource:
    """Images of a folder in name order (or the given files, in that order), replayed at ``fps``."""

    live = False

    def __init__(self, folder: Path, fps: float = 30.0, files: list[Path] | None = None) -> None:
        self.description = str(folder)
        self.fps = fps
        self._files = folder_images(folder) if files is None else list(files)
        if not self._files:
            raise CameraLost(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {folder}")
        self.length_s = len(self._files) / fps
        self._index = 0

    def read(self) -> tuple[np.ndarray, float] | None:
        while self._index < len(self._files):
            path = self._files[self._index]
            self._index += 1
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is None:
                log.warning("skipping unreadable image %s", path)
                continue
            if image.dtype != np.uint8:
                image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
            return image, (self._index - 1) / self.fps
        return None

    def close(self) -> None:
        pass


class SyntheticSource:
    """One camera of the built-in synthetic pair (see :mod:`edge_runtime.synthetic`)."""

    live = False

    def __init__(self, camera: str, fps: float = 30.0, seed: int = 0, size: tuple[int, int] = (640, 480),
                 frames: int = 0) -> None:
        self.description = f"synthetic {camera} (seed {seed}, {fps:g} fps, {size[0]}x{size[1]})"
        self.fps = fps
        self._camera = camera
        self._scene = SyntheticScene(seed=seed, size=size)
        self._frames = frames
        self.length_s = frames / fps if frames else 0.0
        self._index = 0

    def read(self) -> tuple[np.ndarray, float] | None:
        if self._frames and self._index >= self._frames:
            return None
        t = self._index / self.fps
        self._index += 1
        render = self._scene.render_visible if self._camera == "visible" else self._scene.render_thermal
        return render(t), t

    def close(self) -> None:
        pass


def _options(spec: str) -> tuple[str, dict[str, str]]:
    base, _, query = spec.partition("?")
    return base, dict(parse_qsl(query))


def _number(opts: dict[str, str], key: str, default: float, spec: str) -> float:
    try:
        value = float(opts.get(key, default))
    except ValueError:
        raise UserError(f"camera {spec!r}: {key} must be a number, got {opts[key]!r}") from None
    if value < 0 or (key == "fps" and value == 0):
        raise UserError(f"camera {spec!r}: {key} must be positive")
    return value


def make_opener(camera: str, spec: str) -> Callable[[], FrameSource]:
    """A function that opens the source (again); it raises CameraLost when it cannot."""
    if URL_RE.match(spec):
        return lambda: VideoSource(spec, live=True)
    base, opts = _options(spec)
    if base == "synthetic":
        w, _, h = opts.get("size", "640x480").partition("x")
        if not (w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
            raise UserError(f"camera {spec!r}: size must be WIDTHxHEIGHT, e.g. 640x480")
        fps = _number(opts, "fps", 30.0, spec)
        seed, frames = int(_number(opts, "seed", 0, spec)), int(_number(opts, "frames", 0, spec))
        return lambda: SyntheticSource(camera, fps, seed, (int(w), int(h)), frames)
    if base.isdigit():
        return lambda: VideoSource(int(base), live=True)
    if base.startswith("/dev/"):
        return lambda: VideoSource(base, live=True)
    path = Path(base).expanduser()
    if path.is_dir():
        fps = _number(opts, "fps", 30.0, spec)
        return lambda: FolderSource(path, fps)
    if path.is_file():
        return lambda: VideoSource(str(path), live=False)
    raise UserError(f"{camera} camera {spec!r}: no such file, folder or device")


@dataclass
class Replay:
    """How the sources of one run were treated (reported in the run summary)."""

    mode: str  # "live", "video" (files, or folders with ?fps=), "stills" (folders without a frame rate)
    folders: dict | None = None  # FolderMatch.report() when both cameras are image folders

    def summary(self) -> dict:
        return {"mode": self.mode, **({"folders": self.folders} if self.folders else {})}


def _folder_spec(spec: str) -> tuple[Path, dict[str, str]] | None:
    base, opts = _options(spec)
    if URL_RE.match(spec) or base == "synthetic" or base.isdigit() or base.startswith("/dev/"):
        return None
    path = Path(base).expanduser()
    return (path, opts) if path.is_dir() else None


def make_openers(specs: dict[str, str]) -> tuple[dict[str, Callable[[], FrameSource]], Replay]:
    """Openers of both cameras; two image folders are paired by file name (see :func:`match_folders`)."""
    folders = {cam: _folder_spec(spec) for cam, spec in specs.items()}
    openers = {cam: make_opener(cam, spec) for cam, spec in specs.items()}
    if not all(folders.values()):
        if any(folders.values()):
            log.warning("one camera is an image folder, the other is not: frames pair by capture time "
                        "(folder index / fps), not by name")
        return openers, Replay("video")
    stills = all("fps" not in opts for _, opts in folders.values())
    match = match_folders(folders["visible"][0], folders["thermal"][0])
    if not match.visible:
        raise UserError(f"image folders {folders['visible'][0]} and {folders['thermal'][0]}: no file name appears in "
                        f"both (pairs are matched by name)")
    for cam, files in (("visible", match.visible), ("thermal", match.thermal)):
        path, opts = folders[cam]
        fps = _number(opts, "fps", 30.0, specs[cam])
        openers[cam] = (lambda path=path, fps=fps, files=files: FolderSource(path, fps, files))
    mode = "stills" if stills else "video"
    if stills:
        log.info("image folders without a frame rate: treated as stills (no temporal suppression); add ?fps=N to "
                 "treat them as a video's frames")
    return openers, Replay(mode, match.report())


def open_at_start(camera: str, opener: Callable[[], FrameSource], spec: str) -> FrameSource:
    """Open a camera at start-up; failing here is the user's problem (one clear line)."""
    try:
        source = opener()
    except CameraLost as exc:
        raise UserError(f"cannot open {camera} camera {spec!r}: {exc}") from None
    log.info("%s camera: %s (%s, %.3g fps)", camera, source.description, "live" if source.live else "replay", source.fps)
    return source


class ReplayClock:
    """Shared origin of paced (``--realtime``) replays, so both files start together."""

    def __init__(self) -> None:
        self.wall0 = time.time()
        self.mono0 = time.monotonic()
        self._origin: float | None = None
        self._lock = threading.Lock()

    def origin(self, source: FrameSource, realtime: bool) -> float:
        """Unix time of a replay's first frame, the same for both cameras (the first to ask fixes it):
        now for a paced replay, its start minus its length for an as-fast-as-possible one, so no
        capture time lies after the moment its frame is read (a source of unknown length starts now)."""
        with self._lock:
            if self._origin is None:
                self._origin = self.wall0 - (0.0 if realtime else float(getattr(source, "length_s", 0.0) or 0.0))
            return self._origin

    def wait_until(self, media_t: float, stop: threading.Event) -> None:
        delay = self.mono0 + media_t - time.monotonic()
        if delay > 0:
            stop.wait(delay)


class CaptureThread(threading.Thread):
    """Reads one camera into a bounded queue; reopens a lost live camera with backoff.

    Replays block when the queue is full (nothing is dropped); live cameras drop the oldest queued
    frame instead (counted by ``on_drop``). ``restart()`` abandons a frozen read and reopens.
    """

    def __init__(self, camera: str, source: FrameSource, opener: Callable[[], FrameSource], out: queue.Queue,
                 stop: threading.Event, clock: ReplayClock, realtime: bool, reopen_backoff_s: float = 1.0,
                 on_state: Callable[[str, str], None] | None = None,
                 on_drop: Callable[[str], None] | None = None) -> None:
        super().__init__(name=f"capture-{camera}", daemon=True)
        self.camera = camera
        self.source = source
        self.live = source.live
        self._opener = opener
        self._out = out
        self._halt = stop
        self._clock = clock
        self._realtime = realtime
        self._backoff0 = reopen_backoff_s
        self._notify = on_state or (lambda cam, state: None)
        self.state = "starting"
        self._on_drop = on_drop or (lambda cam: None)
        self._generation = 0
        self._lock = threading.Lock()
        self.index = 0
        self.reopens = 0
        self.last_frame_mono = time.monotonic()

    def _on_state(self, camera: str, state: str) -> None:
        self.state = state
        self._notify(camera, state)

    def stalled(self, now_mono: float, timeout_s: float) -> bool:
        """A live stream that delivered frames and then went silent (a read blocked on a frozen stream).

        A camera being reopened is not stalled: its reopen loop has its own backoff."""
        return self.live and self.state in ("starting", "opened", "streaming") and \
            now_mono - self.last_frame_mono > timeout_s

    # -- control from the supervisor -----------------------------------------------------------

    def restart(self) -> None:
        """The stream froze: forget the blocked read and continue in a fresh thread of control."""
        with self._lock:
            self._generation += 1
            generation = self._generation
        log.warning("%s camera stalled; reopening", self.camera)
        self._on_state(self.camera, "stalled")
        self.last_frame_mono = time.monotonic()
        threading.Thread(target=self._loop, args=(generation, None), name=f"capture-{self.camera}-{generation}",
                         daemon=True).start()

    def _current(self, generation: int) -> bool:
        return generation == self._generation

    # -- capture loop --------------------------------------------------------------------------

    def run(self) -> None:
        self._loop(0, self.source)

    def _reopen(self, generation: int) -> FrameSource | None:
        backoff = self._backoff0
        while not self._halt.is_set() and self._current(generation):
            try:
                source = self._opener()
                self.reopens += 1
                self.last_frame_mono = time.monotonic()
                self._on_state(self.camera, "opened")
                log.info("%s camera reopened: %s", self.camera, source.description)
                return source
            except CameraLost as exc:
                log.warning("%s camera: %s; retrying in %.1f s", self.camera, exc, backoff)
                self._halt.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        return None

    def _loop(self, generation: int, source: FrameSource | None) -> None:
        t0: float | None = None
        origin = 0.0
        try:
            while not self._halt.is_set() and self._current(generation):
                if source is None:
                    self._on_state(self.camera, "reopening")
                    source = self._reopen(generation)
                    if source is None:
                        break
                try:
                    item = source.read()
                except (CameraLost, cv2.error) as exc:
                    log.warning("%s camera lost: %s", self.camera, exc)
                    self._on_state(self.camera, "lost")
                    source.close()
                    source = None
                    continue
                if not self._current(generation):
                    break
                if item is None:
                    log.info("%s camera: end of stream after %d frames", self.camera, self.index)
                    self._on_state(self.camera, "ended")
                    break
                image, media_t = item
                if source.live:
                    wall = t = time.time()
                else:
                    if t0 is None:
                        t0, origin = media_t, self._clock.origin(source, self._realtime)
                    if self._realtime:
                        self._clock.wait_until(media_t - t0, self._halt)
                    t, wall = media_t, origin + media_t - t0
                self._on_state(self.camera, "streaming")
                self.last_frame_mono = time.monotonic()
                self._put(Frame(self.camera, self.index, t, wall, image), source.live, generation)
                self.index += 1
        finally:
            if source is not None:
                source.close()
            if self._current(generation):
                self._put_end()

    def _put(self, frame: Frame, live: bool, generation: int) -> None:
        if live:
            while True:
                try:
                    self._out.put_nowait(frame)
                    return
                except queue.Full:
                    try:
                        self._out.get_nowait()
                        self._on_drop(self.camera)
                    except queue.Empty:
                        pass
        while not self._halt.is_set() and self._current(generation):
            try:
                self._out.put(frame, timeout=0.1)
                return
            except queue.Full:
                continue
        # stopping: still hand the frame over so nothing captured is lost
        if self._current(generation):
            self._out.put(frame)

    def _put_end(self) -> None:
        self._out.put(END)
