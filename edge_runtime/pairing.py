"""Pair visible and thermal frames by capture time.

Each frame pairs at most once, with its mutual nearest frame of the other camera, and only when
their capture times differ by at most ``tolerance_s``. That handles different frame rates (a 9 Hz
thermal camera beside a 30 Hz visible one: each thermal frame takes the nearest visible frame, the
other visible frames go unpaired), clock drift (the nearest frame is re-chosen at every step) and
a stalled stream (its partner's frames go unpaired; the buffers are bounded). To know that a frame
is the nearest, the pairer may wait for the next frame of the lagging camera: one frame of latency.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from msmine.edge_runtime.cameras import CAMERAS, Frame


@dataclass
class Pair:
    index: int  # sequence number of the pair
    visible: Frame
    thermal: Frame

    @property
    def t(self) -> float:
        """The pair's capture time (the visible frame's)."""
        return self.visible.t


class Pairer:
    """Feed frames of both cameras (each in capture order); get pairs and counts of unpaired frames."""

    def __init__(self, tolerance_s: float, max_buffer: int = 64) -> None:
        self.tolerance_s = float(tolerance_s)
        self.max_buffer = max_buffer
        self._buf: dict[str, deque[Frame]] = {cam: deque() for cam in CAMERAS}
        self._ended = dict.fromkeys(CAMERAS, False)
        self.unpaired = dict.fromkeys(CAMERAS, 0)
        self.paired = 0

    def push(self, frame: Frame) -> list[Pair]:
        self._buf[frame.camera].append(frame)
        pairs = self._match(final=False)
        for cam in CAMERAS:  # a stalled partner: keep the buffer bounded
            while len(self._buf[cam]) > self.max_buffer:
                self._drop(cam)
        return pairs

    def settle(self) -> list[Pair]:
        """Decide with what is known now (the lagging camera is silent): no more waiting for lookahead."""
        return self._match(final=True)

    def end(self, camera: str) -> list[Pair]:
        """``camera``'s stream ended: pair what can be paired, drop what never will be."""
        self._ended[camera] = True
        return self._match(final=False)

    def pending(self) -> int:
        return sum(len(b) for b in self._buf.values())

    def _drop(self, camera: str) -> None:
        self._buf[camera].popleft()
        self.unpaired[camera] += 1

    def _match(self, final: bool) -> list[Pair]:
        vis, thr = self._buf["visible"], self._buf["thermal"]
        tol = self.tolerance_s
        out: list[Pair] = []
        while vis and thr:
            a, b = vis[0], thr[0]
            if a.t < b.t - tol:
                self._drop("visible")
                continue
            if b.t < a.t - tol:
                self._drop("thermal")
                continue
            d = abs(a.t - b.t)
            if a.t < b.t:  # a later visible frame might be nearer to b
                if len(vis) > 1:
                    if abs(vis[1].t - b.t) < d:
                        self._drop("visible")
                        continue
                elif not (final or self._ended["visible"]):
                    break
            elif b.t < a.t:  # a later thermal frame might be nearer to a
                if len(thr) > 1:
                    if abs(thr[1].t - a.t) < d:
                        self._drop("thermal")
                        continue
                elif not (final or self._ended["thermal"]):
                    break
            vis.popleft()
            thr.popleft()
            out.append(Pair(self.paired, a, b))
            self.paired += 1
        for cam, other in (("visible", "thermal"), ("thermal", "visible")):
            if self._ended[other] and not self._buf[other]:
                while self._buf[cam]:  # nothing will ever pair with these
                    self._drop(cam)
        return out
