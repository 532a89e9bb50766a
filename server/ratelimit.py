"""Rate limits: per-key token bucket (in memory, one server process), the same limit shared by every
replica through the metadata database, and the failed-auth throttle."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """``per_minute`` events per key per minute with a burst of ``per_minute``; 0 disables."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take one event for ``key``: 0.0 when allowed, else the seconds to wait before retrying."""
        if self.per_minute <= 0:
            return 0.0
        rate = self.per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))


class SharedRateLimiter:
    """``per_minute`` uploads per device per minute, counted in the metadata database so that N
    replicas behind a load balancer enforce one limit (fixed one-minute windows; the store's
    ``rate_hit``). Same interface as :class:`RateLimiter`."""

    def __init__(self, store, per_minute: int, clock: Callable[[], float] = time.time) -> None:
        self.per_minute = per_minute
        self._store = store
        self._clock = clock

    @property
    def waits_on_network(self) -> bool:
        """Whether :meth:`acquire` makes a database round trip (callers on an event loop use a thread)."""
        return self.per_minute > 0 and getattr(self._store, "waits_on_network", False)

    def acquire(self, key: str) -> float:
        if self.per_minute <= 0:
            return 0.0
        now = self._clock()
        if self._store.rate_hit(key, self.per_minute, now):
            return 0.0
        return 60.0 - (now % 60.0)

    retry_after_header = staticmethod(RateLimiter.retry_after_header)


class FailureThrottle:
    """At most ``limit`` failures per key in a fixed window of ``window_s`` seconds; 0 disables.

    :meth:`blocked` says how long a key must still wait (0.0 when it may try); :meth:`fail` counts one
    failure. Memory is bounded: when more than ``max_keys`` keys are tracked, expired windows are
    dropped, then the oldest ones.
    """

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window start, failures)
        self._lock = threading.Lock()

    def blocked(self, key: str) -> float:
        if self.limit <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            start, count = self._windows.get(key, (now, 0))
            if now - start >= self.window_s:
                self._windows.pop(key, None)
                return 0.0
            return (start + self.window_s - now) if count >= self.limit else 0.0

    def fail(self, key: str) -> None:
        if self.limit <= 0:
            return
        now = self._clock()
        with self._lock:
            start, count = self._windows.get(key, (now, 0))
            if count == 0 or now - start >= self.window_s:  # a new window goes to the end: oldest first
                self._windows.pop(key, None)
                start, count = now, 0
            self._windows[key] = (start, count + 1)
            if len(self._windows) > self.max_keys:
                self._prune(now)

    def _prune(self, now: float) -> None:
        """Drop expired windows, then the oldest, from the front (dict order = window start order)."""
        while self._windows:
            key = next(iter(self._windows))
            if now - self._windows[key][0] < self.window_s and len(self._windows) <= self.max_keys:
                break
            del self._windows[key]
