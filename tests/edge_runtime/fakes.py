"""Camera sources with injected faults (vanish, freeze) and rate changes, for pipeline tests."""

from __future__ import annotations

import threading
import time

import numpy as np

from msmine.edge_runtime.cameras import CameraLost


class LiveWrapper:
    """Turns a replay source into a live camera paced at its fps, with optional faults.

    ``vanish_at``: frame index at which read() raises CameraLost (the camera is unplugged);
    ``freeze_at``: frame index at which read() blocks for ``freeze_s`` (a frozen stream).
    Each fault fires once per wrapper family (``state`` is shared by the opener's instances).
    """

    live = True

    def __init__(self, inner, state: dict, vanish_at: int = -1, freeze_at: int = -1, freeze_s: float = 5.0) -> None:
        self.inner = inner
        self.fps = inner.fps or 30.0
        self.description = f"live({inner.description})"
        self.state = state
        self.vanish_at, self.freeze_at, self.freeze_s = vanish_at, freeze_at, freeze_s
        self._next = time.monotonic()

    def read(self):
        n = self.state.setdefault("n", 0)
        if n == self.vanish_at and not self.state.get("vanished"):
            self.state["vanished"] = True
            raise CameraLost("unplugged")
        if n == self.freeze_at and not self.state.get("frozen"):
            self.state["frozen"] = True
            threading.Event().wait(self.freeze_s)
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + 1 / self.fps, time.monotonic())
        item = self.inner.read()
        if item is None:
            raise CameraLost("stream ended")
        self.state["n"] = n + 1
        return item

    def close(self):
        self.inner.close()


class Subsampled:
    """A replay source keeping only the frames nearest to k / fps (a slower camera on the same scene)."""

    live = False

    def __init__(self, inner, fps: float) -> None:
        self.inner = inner
        self.fps = fps
        self.description = f"{inner.description} @ {fps:g} fps"
        self._k = 0

    def read(self):
        while True:
            item = self.inner.read()
            if item is None:
                return None
            image, t = item
            target = self._k / self.fps
            if t + 0.5 / (self.inner.fps or 30.0) > target:
                self._k += 1
                return image, t

    def close(self):
        self.inner.close()


def blank(h: int, w: int, value: int = 0) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)
