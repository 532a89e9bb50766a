"""A real Label Studio server for the tests: ``label-studio start`` from ``.venv-label-studio`` (installed
by scripts/setup.sh, its own venv: Label Studio pins Django and friends) on 127.0.0.1, a free port,
its own data directory, one user with a known legacy API token made non-interactively
(``--username/--password/--user-token --enable-legacy-api-token``), health waited for with a bound,
stopped at the end. Session-scoped: one server serves every test that asks for ``label_studio``.

Start-up is dominated by Django's migrations (minutes on two shared cores); scripts/setup.sh runs
them once into ``.venv-label-studio/msmine-template/label_studio.sqlite3`` and each start copies that
database, which makes a start take seconds.

Missing Label Studio fails the tests (CI installs it); only ``MSMINE_NO_LABEL_STUDIO=1`` set
explicitly on a developer's machine skips them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LS_VENV = Path(os.environ.get("MSMINE_LABEL_STUDIO_VENV", REPO_ROOT / ".venv-label-studio"))
LS_BIN = LS_VENV / "bin" / "label-studio"
TEMPLATE_DB = LS_VENV / "msmine-template" / "label_studio.sqlite3"
START_TIMEOUT_S = 180.0  # with the migrated template
MIGRATE_TIMEOUT_S = 900.0  # without it: every migration on the first start
STOP_TIMEOUT_S = 20.0
USERNAME = "labeller@example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LabelStudioServer:
    data_dir: Path
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(20))
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    username: str = USERNAME
    proc: subprocess.Popen | None = None
    started_in_s: float = 0.0
    used_template: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"label-studio-{self.port}.log"

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> LabelStudioServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if TEMPLATE_DB.is_file():
            shutil.copyfile(TEMPLATE_DB, self.data_dir / "label_studio.sqlite3")
            self.used_template = True
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
        env.update(LATEST_VERSION_CHECK="false", LABEL_STUDIO_LATEST_VERSION_CHECK="false", HOST="",
                   PYTHONUNBUFFERED="1")
        env.pop("VIRTUAL_ENV", None)
        log = open(self.log_path, "ab")
        began = time.monotonic()
        self.proc = subprocess.Popen(
            [str(LS_BIN), "start", "--no-browser", "--data-dir", str(self.data_dir), "--internal-host", "127.0.0.1",
             "--port", str(self.port), "--username", self.username, "--password", self.password,
             "--user-token", self.token, "--enable-legacy-api-token", "--log-level", "WARNING"],
            cwd=self.data_dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = began + (START_TIMEOUT_S if self.used_template else MIGRATE_TIMEOUT_S)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"label-studio exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.healthy():
                self.started_in_s = time.monotonic() - began
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"label-studio did not answer /health on {self.url} within "
                           f"{deadline - began:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    # Label Studio's own API, as a labeller's browser would use it ---------------------------------

    def api(self, method: str, path: str, json_body=None, token: str | None = None, timeout: float = 60):
        import requests

        return requests.request(method, self.url + path, json=json_body, timeout=timeout,
                                headers={"Authorization": f"Token {token or self.token}"})


def require_label_studio() -> None:
    """Fail (CI, and any machine by default) or skip (only with MSMINE_NO_LABEL_STUDIO=1) when the
    Label Studio venv is missing."""
    if LS_BIN.is_file():
        return
    why = f"Label Studio is not installed at {LS_BIN} (bash scripts/setup.sh installs it)"
    if os.environ.get("MSMINE_NO_LABEL_STUDIO") == "1" and not os.environ.get("CI"):
        pytest.skip(why + "; skipped: MSMINE_NO_LABEL_STUDIO=1")
    pytest.fail(why + "; set MSMINE_NO_LABEL_STUDIO=1 to skip these tests on a machine without it")


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """One real Label Studio server for the session."""
    require_label_studio()
    server = LabelStudioServer(tmp_path_factory.mktemp("label-studio") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()
