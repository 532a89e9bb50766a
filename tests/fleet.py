"""A fleet-scale server as users run it, for the tests and bench/bench_fleet.py: N `msmine serve`
replicas on one PostgreSQL database and one blob store, behind a real nginx (Debian's package) on
loopback. docs/server.md "Fleet scale" shows the same nginx configuration.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

NGINX_CONF = """\
{user_line}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream msmine {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 128m;
        client_body_buffer_size 1m;  # a ~205 KB pair stays in memory (no temporary file per upload)
        # buffer whole uploads here, so a slow device ties up nginx, not a replica
        proxy_request_buffering on;
        location / {{
            proxy_pass http://msmine;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            # a replica that dies mid-request: try the next one. Uploads are idempotent (the
            # upload id is a content hash), so replaying a POST is safe.
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
        }}
        location = /readyz {{
            proxy_pass http://msmine;
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {timeout_s} s")


class Replica:
    def __init__(self, root: Path, db: str, log: Path, extra: list[str]) -> None:
        self.root, self.db, self.port = root, db, free_port()
        self.log_path, self.extra = log, extra
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_file(self):
        """The replica's log, opened for appending (closed in :meth:`stop`)."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        return self._log

    def start(self) -> None:
        self.log_file()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "msmine.loop.cli", "serve", "--root", str(self.root), "--db", self.db,
             "--port", str(self.port), *self.extra],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        wait_http(self.url + "/readyz", proc=self.proc)

    def kill(self) -> None:
        """kill -9: what a crashed replica looks like to nginx and the devices."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if getattr(self, "_log", None):
            self._log.close()


class Fleet:
    """``with Fleet(tmp, dsn, replicas=2) as fleet: fleet.url`` (nginx) / ``fleet.replicas``."""

    def __init__(self, base: Path, db: str, replicas: int = 2, extra: list[str] | None = None) -> None:
        if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
            raise RuntimeError("nginx not installed (Debian: apt-get install nginx)")
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.blobs = self.base / "blobs"  # one shared blob directory (a shared volume)
        self.replicas = [Replica(self.blobs, db, self.base / f"replica{i}.log", extra or []) for i in range(replicas)]
        self.port = free_port()
        self.nginx: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Fleet:
        for replica in self.replicas:
            replica.start()
        prefix = self.base / "nginx"
        prefix.mkdir(exist_ok=True)
        servers = "\n".join(f"        server {r.url[7:]} max_fails=1 fail_timeout=5s;" for r in self.replicas)
        conf = prefix / "nginx.conf"
        # as root, nginx's workers would run as www-data, who cannot enter the test's private folder
        user_line = "user root root;\n" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONF.format(user_line=user_line, prefix=prefix, servers=servers, port=self.port))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.nginx = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                                      stdout=subprocess.DEVNULL, stderr=open(prefix / "stderr.log", "wb"))  # noqa: SIM115
        wait_http(self.url + "/readyz", proc=self.nginx)
        return self

    def __exit__(self, *exc) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
            try:
                self.nginx.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
        for replica in self.replicas:
            replica.stop()

