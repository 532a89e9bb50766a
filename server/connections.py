"""Connection-level limits for ``msmine serve``: an h11 protocol with a header deadline and a cap on
concurrent connections per client address.

uvicorn bounds an *idle* keep-alive connection (``timeout_keep_alive``) but not one that is sending
its request line and headers, one byte at a time; and ``limit_concurrency`` counts every client
together. :func:`guarded_h11` returns uvicorn's ``H11Protocol`` with both added:

* the request line and headers must be complete within ``header_timeout_s`` of the connection
  opening (or of the previous response on a keep-alive connection), else the server answers 408
  and closes;
* one address may hold at most ``max_connections_per_client`` connections at a time; one more is
  answered 503 (``Retry-After: 1``) and closed at once, before anything is read.

Body deadlines are the application's (:mod:`msmine.server.guard`), since only it knows the route.
Behind a reverse proxy every client has the proxy's address: set the cap to 0 there and let the
proxy limit per client.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 << 10  # request line + headers (h11's default, stated here: larger gets 400)
_408 = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_503_BODY = b'{"detail": "too many connections from this address"}'
_503 = (b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(_503_BODY), _503_BODY))


class ConnectionCounter:
    """Open connections per address (thread-safe; one server process)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire(self, address: str) -> bool:
        with self._lock:
            if self.cap > 0 and self._open[address] >= self.cap:
                return False
            self._open[address] += 1
            return True

    def release(self, address: str) -> None:
        with self._lock:
            self._open[address] -= 1
            if self._open[address] <= 0:
                del self._open[address]

    def open(self, address: str) -> int:
        with self._lock:
            return self._open.get(address, 0)


def guarded_h11(header_timeout_s: float, max_connections_per_client: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header deadline and a per-address connection cap."""
    counter = ConnectionCounter(max_connections_per_client)

    class GuardedH11Protocol(H11Protocol):
        connections_per_client = counter

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._address = self.client[0] if self.client else "-"
            self._counted = counter.acquire(self._address)
            self._header_timer: asyncio.TimerHandle | None = None
            self._timed_cycle = None
            if not self._counted:
                log.warning("refused a connection from %s: %d already open (max_connections_per_client)",
                            self._address, counter.cap)
                transport.write(_503)
                transport.close()
                return
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            if getattr(self, "_counted", False):
                self._counted = False
                counter.release(self._address)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if not self._counted:  # refused at connect; ignore what it sends before the close
                return
            super().data_received(data)

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and self.cycle is not self._timed_cycle:
                self._timed_cycle = self.cycle  # a request's headers are complete
                self._cancel_header_timer()

        def on_response_complete(self) -> None:
            self._arm_header_timer()  # the next request on this connection gets its own deadline
            super().on_response_complete()

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            if header_timeout_s > 0:
                self._header_timer = self.loop.call_later(header_timeout_s, self._header_timeout)

        def _cancel_header_timer(self) -> None:
            timer = getattr(self, "_header_timer", None)
            if timer is not None:
                timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a request is being served: its body has the application's deadlines
            log.info("closed a connection from %s: no complete request headers in %.1f s",
                     self._address, header_timeout_s)
            if self.conn.our_state is h11.IDLE:
                self.transport.write(_408)
            self.transport.close()

    return GuardedH11Protocol
