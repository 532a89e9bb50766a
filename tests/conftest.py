"""Shared fixtures. Real-data tests read $MSMINE_DATA (default ../shared/data from the repo root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("MSMINE_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def msmine_data() -> Path:
    """Root of the real data. In CI it is there; the tests fail loudly (not skip) when it is not."""
    root = data_root()
    if not (root / "msrs").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real data not found at {root} (set MSMINE_DATA)")
        pytest.skip(f"real data not found at {root} (set MSMINE_DATA)")
    return root


@pytest.fixture(scope="session")
def msrs_root(msmine_data: Path) -> Path:
    return msmine_data / "msrs"


@pytest.fixture(scope="session")
def m3svd_root(msmine_data: Path) -> Path:
    return msmine_data / "m3svd"


@pytest.fixture(scope="session")
def postgres_server():
    """One throw-away PostgreSQL server for the session (tests/pgserver.py). CI installs it
    (scripts/setup.sh) and these tests fail there, never skip, when it cannot start."""
    from tests.pgserver import PostgresServer, PostgresUnavailable

    try:
        import psycopg  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("psycopg is not installed (pip install 'msmine[postgres]')")
        pytest.skip("psycopg is not installed")
    import shutil
    import tempfile

    # Not under pytest's tmp folder: as root, the cluster belongs to `postgres`, who cannot enter
    # root's private pytest-of-root folder.
    base = Path(tempfile.mkdtemp(prefix="msmine-pg-"))
    try:
        server = PostgresServer(base).__enter__()
    except PostgresUnavailable as exc:
        shutil.rmtree(base, ignore_errors=True)
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL unavailable: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield server
    server.__exit__(None, None, None)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_dsn(postgres_server, request) -> str:
    """A fresh, empty database on the session's PostgreSQL server, for one test."""
    import re

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40] + f"_{os.getpid()}_{id(request) % 10**6}"
    return postgres_server.create_database(name)


@pytest.fixture(scope="session")
def s3_endpoint():
    """A local S3-compatible server (moto, tests/s3server.py) for the session; its endpoint URL."""
    try:
        import boto3  # noqa: F401
        import moto  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("boto3 / moto[server] are not installed (pip install 'msmine[s3,dev]')")
        pytest.skip("boto3 / moto[server] are not installed")
    from tests.s3server import S3Server

    with S3Server() as server:
        yield server.endpoint
