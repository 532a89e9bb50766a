"""A real uvicorn server: kill -9 mid-upload leaves a consistent database and no orphan files; the same
upload sent concurrently yields one record."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.server.live_server import LiveServer, make_tokens
from tests.server.upload_helpers import manifest_bytes, manifest_for, msrs_files, synthetic_files, upload_body

pytestmark = pytest.mark.timeout(120)


def consistent(root: Path) -> tuple[int, set[str]]:
    """Check the database and files agree; return (rows, blob names)."""
    conn = sqlite3.connect(root / "msmine.sqlite3")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
        referenced = {r[0] for r in conn.execute("SELECT sha256 FROM pair_blobs")}
        referenced |= {r[0] for r in conn.execute("SELECT sha256 FROM models")}
    finally:
        conn.close()
    blobs = {p.name for p in (root / "blobs").rglob("*") if p.is_file()}
    assert blobs == referenced, (blobs - referenced, referenced - blobs)
    assert [p for p in (root / "tmp").iterdir()] == []
    return rows, blobs


def send(url: str, token: str, body: bytes, ctype: str) -> int:
    return requests.post(url + "/api/v1/uploads", data=body, timeout=30,
                         headers={"Content-Type": ctype, "Authorization": f"Bearer {token}"}).status_code


def test_kill9_mid_upload_then_restart(tmp_path, msrs_root):
    root = tmp_path / "srv"
    tokens = make_tokens(root)
    server = LiveServer(root, ("--rate-limit", "0")).start()
    try:
        files = msrs_files(msrs_root, "00002D")
        body, ctype = upload_body(manifest_bytes(manifest_for(files, image_size=(640, 480))), files)
        # a slow client: headers and half of the body, then the server dies
        sock = socket.create_connection(("127.0.0.1", server.port))
        head = (f"POST /api/v1/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {tokens['pole-1']}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        sock.sendall(head + body[: len(body) // 2])
        time.sleep(0.5)
        # meanwhile other devices' uploads are in flight: kill while some are being written
        rng = np.random.default_rng(7)
        uploads = [upload_body(manifest_bytes(m), f) for f, m in
                   ((f, manifest_for(f)) for f in (synthetic_files(rng, size=(320, 240)) for _ in range(60)))]
        pool = ThreadPoolExecutor(4)
        futures = [pool.submit(send, server.url, tokens["pole-1"], b, c) for b, c in uploads]
        time.sleep(0.3)
        server.kill9()
        sock.close()
        pool.shutdown(wait=True)
        accepted = sum(1 for f in futures if f.exception() is None and f.result() == 201)
    finally:
        server.stop()
    # restart: the sweep runs before serving
    server = LiveServer(root, ("--rate-limit", "0")).start()
    try:
        rows, _ = consistent(root)
        assert rows >= accepted  # every acknowledged upload survived
        # the interrupted upload can be sent again and is stored once
        assert send(server.url, tokens["pole-1"], body, ctype) == 201
        assert send(server.url, tokens["pole-1"], body, ctype) == 200
        listed = requests.get(server.url + "/api/v1/pairs", params={"limit": 500},
                              headers={"Authorization": f"Bearer {tokens['team']}"}).json()
        assert listed["total"] == rows + 1
    finally:
        server.stop()
    consistent(root)


def test_startup_sweep_removes_orphans(tmp_path):
    root = tmp_path / "srv"
    make_tokens(root)
    orphan = root / "blobs" / "ab" / ("ab" + "0" * 62)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left by a crash between rename and commit")
    (root / "tmp" / "blob-123.part").write_bytes(b"half written")
    from msmine.server.app import create_app

    create_app(root).state.ctx.close()
    assert not orphan.exists()
    consistent(root)


def test_one_server_per_root(tmp_path):
    from msmine.errors import UserError
    from msmine.server.app import create_app

    root = tmp_path / "srv"
    first = create_app(root)
    with pytest.raises(UserError, match="already serving"):
        create_app(root)
    first.state.ctx.close()
    create_app(root).state.ctx.close()


def test_same_upload_twice_concurrently_yields_one_record(tmp_path):
    root = tmp_path / "srv"
    tokens = make_tokens(root)
    server = LiveServer(root, ("--rate-limit", "0")).start()
    try:
        files = synthetic_files(np.random.default_rng(3), size=(320, 240))
        body, ctype = upload_body(manifest_bytes(manifest_for(files)), files)
        barrier = threading.Barrier(8)

        def go() -> int:
            barrier.wait()
            return send(server.url, tokens["pole-1"], body, ctype)

        with ThreadPoolExecutor(8) as pool:
            codes = sorted(pool.map(lambda _: go(), range(8)))
        assert codes.count(201) == 1 and codes.count(200) == 7, codes
    finally:
        server.stop()
    rows, blobs = consistent(root)
    assert rows == 1 and len(blobs) == 3
