"""Fused-branch detections as JSON lines for the vehicle's own use.

``--detections -`` writes to stdout, ``--detections PATH`` appends to a file, and
``--detections unix:/run/msmine.sock`` listens on a local socket: every connected client gets
every line (a client that cannot keep up is disconnected, never slows the pipeline).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
from pathlib import Path

from msmine.errors import UserError

log = logging.getLogger(__name__)


class NullSink:
    def write(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


class StreamSink:
    def __init__(self, stream, owned: bool) -> None:
        self._stream = stream
        self._owned = owned
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            if self._stream is None:
                return
            try:
                self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, ValueError) as exc:  # the reader went away (e.g. `| head`)
                log.warning("detections output closed (%s); no more detection lines", type(exc).__name__)
                self._stream = None

    def close(self) -> None:
        if self._owned and self._stream is not None:
            self._stream.close()


class UnixSocketSink:
    """A listening unix socket broadcasting JSON lines to every connected client."""

    def __init__(self, path: str) -> None:
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._server.bind(path)
        except OSError as exc:
            raise UserError(f"cannot listen on unix socket {path}: {exc.strerror or exc}") from None
        self._server.listen(8)
        self._server.settimeout(0.2)
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="detections-socket", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(0.05)
            with self._lock:
                self._clients.append(conn)

    def write(self, record: dict) -> None:
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            for conn in list(self._clients):
                try:
                    conn.sendall(data)
                except OSError:
                    log.info("detections socket client disconnected")
                    self._clients.remove(conn)
                    conn.close()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            for conn in self._clients:
                conn.close()
            self._clients.clear()
        self._server.close()
        Path(self.path).unlink(missing_ok=True)


def open_sink(spec: str):
    if not spec:
        return NullSink()
    if spec == "-":
        return StreamSink(sys.stdout, owned=False)
    if spec.startswith("unix:"):
        return UnixSocketSink(spec[len("unix:"):])
    try:
        Path(spec).parent.mkdir(parents=True, exist_ok=True)
        return StreamSink(open(spec, "a", encoding="utf-8"), owned=True)  # noqa: SIM115 - closed by close()
    except OSError as exc:
        raise UserError(f"cannot write detections to {spec}: {exc.strerror or exc}") from None
