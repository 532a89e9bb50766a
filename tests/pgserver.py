"""A throw-away PostgreSQL server for the tests: initdb in a temporary folder, loopback only.

Debian's `postgresql` package provides the binaries (`scripts/setup.sh` installs it when run as
root, so CI has it). PostgreSQL refuses to run as root, so as root the cluster belongs to the
`postgres` system user. fsync is off: these clusters hold test data only (``durable=True`` keeps
PostgreSQL's own defaults, fsync and synchronous commit on, for benchmarks that compare durable
write paths).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    pass


def find_bindir() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise PostgresUnavailable("PostgreSQL binaries not found (Debian: apt-get install postgresql)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """``with PostgresServer(tmp) as pg: pg.dsn`` -> ``postgresql://msmine@127.0.0.1:PORT/postgres``."""

    def __init__(self, base: Path, user: str = "msmine", durable: bool = False) -> None:
        self.base = Path(base)
        self.user = user
        self.durable = durable
        self.bindir = find_bindir()
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *cmd: str) -> None:
        out = subprocess.run([*self._as, *cmd], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise PostgresUnavailable(f"{cmd[0]} failed: {out.stderr.strip()[-500:]}")

    def __enter__(self) -> PostgresServer:
        data, sockets = self.base / "data", self.base / "sock"
        self.base.mkdir(parents=True, exist_ok=True)
        sockets.mkdir(exist_ok=True)
        if self._as:
            shutil.chown(self.base, "postgres")
            shutil.chown(sockets, "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", self.user, "--no-sync",
                  "-E", "UTF8", "--locale=C.UTF-8")
        self._log = open(self.base / "postgres.log", "wb")  # noqa: SIM115 (closed in __exit__)
        fast = [] if self.durable else ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self.proc = subprocess.Popen(
            [*self._as, str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(sockets),
             "-c", "listen_addresses=127.0.0.1", *fast, "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=self._log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PostgresUnavailable(f"postgres exited: {(self.base / 'postgres.log').read_text()[-500:]}")
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True)
            if ready.returncode == 0:
                return self
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise PostgresUnavailable("postgres did not become ready within 60 s")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
