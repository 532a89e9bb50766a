"""The server as a fleet runs it: replicas of `msmine serve --db postgresql://...` behind a real nginx,
one PostgreSQL, one shared blob directory. A replica killed (-9) mid-run loses nothing: every pair
the devices keep lands exactly once, devices see retries, not losses."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from msmine.client import ServerClient, UploadOutcome
from tests.server.upload_helpers import manifest_for, synthetic_files

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def fleet(postgres_dsn, tmp_path):
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        import os

        if os.environ.get("CI"):
            pytest.fail("nginx is not installed (scripts/setup.sh installs Debian's nginx)")
        pytest.skip("nginx is not installed")
    from tests.fleet import Fleet

    token = _create_tokens(postgres_dsn)
    with Fleet(tmp_path / "fleet", postgres_dsn, replicas=2,
               extra=["--rate-limit", "0", "--trusted-proxies", "127.0.0.1",
                      "--set", "max_connections_per_client=0", "--set", "sweep_min_age_s=3600"]) as f:
        f.tokens = token
        yield f


def _create_tokens(dsn: str) -> dict:
    tokens = {}
    for who in (["--device", "pole-1"], ["--device", "pole-2"], ["--role", "data-team"]):
        out = subprocess.run([sys.executable, "-m", "msmine.loop.cli", "token", "create", "--db", dsn, *who, "--json"],
                             capture_output=True, text=True, timeout=120, check=True)
        record = json.loads(out.stdout)
        tokens[record["device_id"] or "team"] = record["token"]
    return tokens


def test_tokens_list_against_postgres(postgres_dsn):
    _create_tokens(postgres_dsn)
    out = subprocess.run([sys.executable, "-m", "msmine.loop.cli", "token", "list", "--db", postgres_dsn],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pole-1" in out.stdout and "data-team" in out.stdout


def test_serve_refuses_a_bad_db_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "msmine.loop.cli", "serve", "--root", str(tmp_path / "r"),
                          "--db", "postgresql://nobody@127.0.0.1:1/none"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error: cannot connect to PostgreSQL at postgresql://nobody@127.0.0.1:1/none")
    assert "Traceback" not in out.stderr


def upload_all(url: str, token: str, device: str, count: int, seed: int, results: dict) -> None:
    """One simulated device: upload `count` pairs through nginx, retrying transient failures."""
    rng = np.random.default_rng(seed)
    client = ServerClient(url, token, timeout=10)
    for i in range(count):
        files = synthetic_files(rng)
        manifest = manifest_for(files, device_id=device, captured_at=1_700_000_000 + seed * 10_000 + i)
        for _attempt in range(50):
            result = client.upload_pair(manifest, files)
            if result.ok:
                results["ids"].append(manifest["upload_id"])
                break
            if result.outcome is not UploadOutcome.TRANSIENT:
                results["errors"].append(f"{result.status}: {result.detail}")
                break
            results["retries"] += 1
            time.sleep(0.1)
        else:
            results["lost"].append(manifest["upload_id"])


def test_kill_a_replica_mid_run_loses_nothing(fleet):
    results = {"ids": [], "retries": 0, "lost": [], "errors": []}
    devices = [threading.Thread(target=upload_all, args=(fleet.url, fleet.tokens[f"pole-{1 + d % 2}"],
                                                          f"pole-{1 + d % 2}", 15, d, results)) for d in range(8)]
    for t in devices:
        t.start()
    time.sleep(1.0)
    fleet.replicas[0].kill()  # kill -9 while uploads are in flight
    for t in devices:
        t.join(240)
    assert not results["errors"] and not results["lost"]
    print(f"fleet: 2 replicas behind nginx, one killed -9 mid-run: {len(results['ids'])} uploads, "
          f"{results['retries']} retries seen by devices, 0 lost")
    assert len(results["ids"]) == 8 * 15 == len(set(results["ids"]))
    team = ServerClient(fleet.url, fleet.tokens["team"], timeout=10)
    stored = [p.upload_id for p in team.iter_pairs()]
    assert sorted(stored) == sorted(results["ids"])  # exactly once: none lost, none duplicated
    # the surviving replica still serves the blobs of pairs the dead one stored
    first = stored[0]
    assert hashlib.sha256(team.pair_file(first, "visible")).hexdigest()
    with urllib.request.urlopen(fleet.url + "/readyz", timeout=5) as resp:
        assert resp.status == 200


def test_rate_limit_is_shared_by_replicas(postgres_dsn, tmp_path):
    """A device's per-minute limit counts its uploads on every replica together."""
    from tests.fleet import Fleet

    tokens = _create_tokens(postgres_dsn)
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed")
    with Fleet(tmp_path / "fleet", postgres_dsn, replicas=2,
               extra=["--rate-limit", "6/min", "--set", "max_connections_per_client=0"]) as f:
        rng = np.random.default_rng(5)
        outcomes = []
        for replica in f.replicas * 4:  # alternate replicas directly: 8 uploads, limit 6
            files = synthetic_files(rng)
            manifest = manifest_for(files, device_id="pole-1")
            outcomes.append(ServerClient(replica.url, tokens["pole-1"], timeout=10).upload_pair(manifest, files).status)
        assert outcomes.count(201) == 6 and outcomes.count(429) == 2


def test_a_replica_waiting_on_postgres_still_serves_other_requests(postgres_dsn, tmp_path):
    """A PostgreSQL round trip never runs on the replica's event loop: while the guard's token
    lookup waits for a database connection (every pooled one is taken), the same replica still
    answers other requests, and the waiting one completes once a connection is free."""
    from msmine.server.config import ServerConfig
    from tests.server.conftest import make_served

    served = make_served(tmp_path / "srv", ServerConfig(rate_limit_per_min=0, db_pool_size=2), db=postgres_dsn)
    pool = served.app.state.ctx.meta._pool
    try:
        with served.client:
            held = [pool.getconn(timeout=10) for _ in range(2)]  # the pool's every connection
            answers: list = []
            waiting = threading.Thread(target=lambda: answers.append(
                served.client.get("/api/v1/whoami", headers=served.auth(served.device))))
            waiting.start()
            time.sleep(0.5)
            assert waiting.is_alive(), "the token lookup should be waiting for a pooled connection"
            started = time.monotonic()
            assert served.client.get("/healthz").status_code == 200
            assert time.monotonic() - started < 5
            assert waiting.is_alive()  # answered while the lookup still waited
            for conn in held:
                pool.putconn(conn)
            waiting.join(30)
            assert answers and answers[0].status_code == 200
            assert answers[0].json()["device_id"] == "pole-1"
    finally:
        served.app.state.ctx.close()
