"""Run the product's own commands as a user would: subprocesses and a local server.

Used by `msmine demo` and `msmine simulate`. Standard library only (plus msmine core), so the
orchestration itself never imports torch: training and export run in their own processes. HTTP
calls go through :class:`msmine.client.ServerClient` (``ServerProcess.client(token)``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from msmine.client import ServerClient
from msmine.errors import UserError

log = logging.getLogger(__name__)

MSMINE = [sys.executable, "-m", "msmine.loop.cli"]
EDGE_RUNTIME = [sys.executable, "-m", "msmine.edge_runtime.cli"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Progress:
    """Shows that a long step is alive: the last line of its log, refreshed every few seconds."""

    def __init__(self, label: str, log_file: Path, interval: float = 2.0) -> None:
        self.label = label
        self.log_file = log_file
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._tty = sys.stdout.isatty()
        self.started = time.monotonic()

    def _last_line(self) -> str:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 4096))
                tail = f.read().decode(errors="replace").replace("\r", "\n").strip().splitlines()
            return tail[-1][-90:] if tail else ""
        except OSError:
            return ""

    def _loop(self) -> None:
        last_print = 0.0
        while not self._stop.wait(self.interval):
            elapsed = time.monotonic() - self.started
            if self._tty:
                sys.stdout.write(f"\r\033[K    {elapsed:5.0f} s  {self._last_line()}")
                sys.stdout.flush()
            elif elapsed - last_print >= 15:
                last_print = elapsed
                print(f"    ... {elapsed:.0f} s: {self._last_line()}", flush=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self._tty:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()


def run_step(cmd: list[str], log_file: Path, label: str, timeout: float | None = None) -> str:
    """Run one command to completion, its output in ``log_file``; a failure is a UserError quoting it."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log.debug("running: %s", " ".join(cmd))
    with open(log_file, "w") as out, Progress(label, log_file):
        try:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=_child_env(), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"{label} did not finish within {timeout:.0f} s (log: {log_file})") from None
    text = log_file.read_text(errors="replace")
    if proc.returncode != 0:
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        detail = errors[-1] if errors else (text.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"{label} failed (exit {proc.returncode}): {detail} (log: {log_file})")
    return text


def create_token(root: Path, *, device: str | None = None, team: bool = False) -> str:
    who = ["--role", "data-team"] if team else ["--device", str(device)]
    out = subprocess.run([*MSMINE, "token", "create", "--root", str(root), *who, "--json"],
                         capture_output=True, text=True, env=_child_env(), timeout=120)
    if out.returncode != 0:
        raise UserError(f"could not create a token: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout)["token"]


class ServerProcess(contextlib.AbstractContextManager):
    """`msmine serve` on loopback in a child process, stopped on exit."""

    def __init__(self, root: Path, log_file: Path, port: int | None = None, extra: list[str] | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ServerProcess:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(self.log_file, "w")
        self.proc = subprocess.Popen(
            [*MSMINE, "serve", "--root", str(self.root), "--port", str(self.port), *self.extra],
            stdout=self._out, stderr=subprocess.STDOUT, env=_child_env(),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise UserError(f"the server exited at start (log: {self.log_file})")
            if self.client().is_up(timeout=1):
                return self
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise UserError(f"the server did not answer within 60 s (log: {self.log_file})")

    def client(self, token: str | None = None, timeout: float = 60.0) -> ServerClient:
        """A client of this server (``token``: a device or data-team token)."""
        return ServerClient(self.url, token, timeout=timeout)

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def parse_edge_summary(text: str) -> dict:
    """The JSON summary that `edge-runtime` logs as its last `summary: {...}` line."""
    for line in reversed(text.splitlines()):
        idx = line.find("summary: {")
        if idx >= 0:
            try:
                return json.loads(line[idx + len("summary: "):])
            except json.JSONDecodeError:
                break
    return {}
