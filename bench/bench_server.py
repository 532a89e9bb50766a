"""Collection-server benchmark on loopback (prints figures; not part of the test suite).

    .venv/bin/python bench/bench_server.py                      # ingest + listing
    .venv/bin/python bench/bench_server.py --uploads 3000 --clients 8 --records 100000

1. Ingest: a real ``msmine serve`` (uvicorn, SQLite WAL, fsync on) receives pairs of ~2 x 100 KB
   (real MSRS JPEGs padded with a unique JPEG comment so every pair is new) plus a small heat map
   from several concurrent client processes (keep-alive sessions). Prints uploads/s, p50/p99 latency.
2. Listing: 100k pair rows, then GET /api/v1/pairs sorted by score (first page, a deep page, a
   filtered page; the response includes the total count), a full sorted scan of all rows in SQL,
   and a top-K batch with near-duplicate removal.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from msmine.server.config import ServerConfig  # noqa: E402
from msmine.server.context import open_stores  # noqa: E402
from msmine.server.records import PairRecord  # noqa: E402
from msmine.server.tokens import create_token  # noqa: E402
from msmine.wire import build_manifest  # noqa: E402


def data_root() -> Path:
    return Path(os.environ.get("MSMINE_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


def padded_jpeg(jpeg: bytes, tag: str, target: int) -> bytes:
    """Insert a COM segment (unique tag + padding) after SOI: still a valid JPEG, about ``target`` bytes."""
    pad = max(0, min(65000, target - len(jpeg) - 4 - len(tag)))
    payload = tag.encode() + b" " * pad
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def multipart(manifest: dict, files: dict[str, bytes], boundary: str = "benchboundary") -> tuple[bytes, str]:
    chunks = []
    for name, data in (("manifest", json.dumps(manifest).encode()), *files.items()):
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
                      f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def build_uploads(n: int, device: str, seed: int) -> list[tuple[bytes, str]]:
    return [multipart(manifest, files) for manifest, files in build_pairs(n, device, seed)]


def build_pairs(n: int, device: str, seed: int) -> list[tuple[dict, dict[str, bytes]]]:
    """``n`` distinct real-size pairs (manifest, files) of ``device``."""
    msrs = data_root() / "msrs" / "train"
    names = sorted(p.stem for p in (msrs / "visible").glob("*.jpg"))[:200]
    rng = np.random.default_rng(seed)
    heat = cv2.imencode(".png", cv2.applyColorMap(rng.integers(0, 255, (60, 80), np.uint8), cv2.COLORMAP_JET))[1]
    out = []
    for i in range(n):
        name = names[i % len(names)]
        tag = f"{device}-{seed}-{i}"
        files = {"visible": padded_jpeg((msrs / "visible" / f"{name}.jpg").read_bytes(), tag, 100_000),
                 "thermal": padded_jpeg((msrs / "infrared" / f"{name}.jpg").read_bytes(), tag, 100_000),
                 "heatmap": heat.tobytes()}
        manifest = build_manifest(
            device_id=device, captured_at={"visible": 1.764e9 + i, "thermal": 1.764e9 + i}, model_version="v1",
            model_hash="ab" * 32, task="detect", score=float(rng.random()), image_size=(640, 480),
            class_names=["person", "bicycle", "car"], files=files,
            predictions={"fused": [{"box": [0.1, 0.1, 0.3, 0.5], "score": 0.8, "class_id": 0}],
                         "visible": [], "thermal": []})
        out.append((manifest, files))
    return out


def client(args: tuple[str, str, str, int, int]) -> tuple[list[float], int]:
    import http.client
    from urllib.parse import urlsplit

    url, token, device, n, seed = args
    uploads = build_uploads(n, device, seed)
    host = urlsplit(url)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)  # keep-alive, light on CPU
    latencies, failures = [], 0
    barrier_file = Path(tempfile.gettempdir()) / f"bench-server-go-{os.getppid()}"
    while not barrier_file.exists():
        time.sleep(0.01)
    for body, ctype in uploads:
        t = time.perf_counter()
        conn.request("POST", "/api/v1/uploads", body=body,
                     headers={"Content-Type": ctype, "Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        resp.read()
        latencies.append(time.perf_counter() - t)
        failures += resp.status != 201
    return latencies, failures


SERVER_SETS: list[str] = []


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(root: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    sets = [a for kv in SERVER_SETS for a in ("--set", kv)]
    cmd = [sys.executable, "-m", "msmine.loop.cli", "serve", "--root", str(root), "--port", str(port), "--rate-limit", "0",
           *sets]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def bench_ingest(work: Path, uploads: int, clients: int, port: int) -> None:
    root = work / "ingest"
    meta, _ = open_stores(root, ServerConfig())
    devices = [f"bench-{i}" for i in range(clients)]
    tokens = {d: create_token(meta, role="device", device_id=d)[0] for d in devices}
    meta.close()
    proc = start_server(root, port)
    go = Path(tempfile.gettempdir()) / f"bench-server-go-{os.getpid()}"
    go.unlink(missing_ok=True)
    try:
        per = uploads // clients
        with mp.get_context("spawn").Pool(clients) as pool:
            jobs = pool.map_async(client, [(f"http://127.0.0.1:{port}", tokens[d], d, per, i)
                                           for i, d in enumerate(devices)])
            time.sleep(2.0 + 0.004 * per)  # let the clients build their uploads
            t0 = time.perf_counter()
            go.touch()
            cpu0 = process_cpu(proc.pid)
            results = jobs.get()
            wall = time.perf_counter() - t0
            server_cpu = process_cpu(proc.pid) - cpu0
    finally:
        go.unlink(missing_ok=True)
        proc.terminate()
        proc.wait()
    lat = sorted(x for r, _ in results for x in r)
    failures = sum(f for _, f in results)
    body_kb = (2 * 100_000 + 5_000) / 1000
    print(f"ingest: {len(lat)} uploads of ~{body_kb:.0f} KB from {clients} concurrent clients in {wall:.2f} s "
          f"-> {len(lat) / wall:.0f} uploads/s; latency p50 {1000 * lat[len(lat) // 2]:.1f} ms, "
          f"p99 {1000 * lat[int(0.99 * (len(lat) - 1))]:.1f} ms; failures {failures}; "
          f"server CPU {1000 * server_cpu / max(1, len(lat)):.1f} ms per upload")


def fill_records(root: Path, n: int) -> None:
    meta, _ = open_stores(root, ServerConfig())
    rng = np.random.default_rng(0)
    scores = rng.random(n)
    hashes = rng.integers(-(1 << 63), (1 << 63) - 1, size=(n, 2), dtype=np.int64)
    files = json.dumps({p: {"sha256": "0" * 64, "bytes": 1, "media_type": "image/jpeg"}
                        for p in ("visible", "thermal", "heatmap")})
    rows = [(f"{i:064x}", f"dev-{i % 50}", 1.764e9 + i, 1.764e9 + i, float(scores[i]), "v1", "detect", 640, 480,
             files, int(hashes[i, 0]), int(hashes[i, 1]), 0, "{}", float(scores[i])) for i in range(n)]
    conn = meta._read()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO pairs (upload_id, device_id, captured_at, received_at, score, model_version, task, width, "
        "height, files, phash_visible, phash_thermal, labelled, manifest, rank_score) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    meta.close()
    assert PairRecord  # the row layout above follows msmine.server.records.PairRecord / server/migrations.py


def timed(fn, repeat: int = 7) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000, out


def bench_listing(work: Path, n: int, port: int) -> None:
    root = work / "listing"
    t = time.perf_counter()
    fill_records(root, n)
    print(f"listing: inserted {n} rows in {time.perf_counter() - t:.1f} s")
    meta, _ = open_stores(root, ServerConfig())
    token = create_token(meta, role="data-team")[0]
    proc = start_server(root, port)
    try:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        url = f"http://127.0.0.1:{port}/api/v1/pairs"
        for label, params in (("first page (50)", {"limit": 50}),
                              ("deep page offset 99,950", {"limit": 50, "offset": n - 50}),
                              ("filtered device+score", {"limit": 50, "device": "dev-7", "min_score": 0.5}),
                              ("page of 500", {"limit": 500})):
            ms, resp = timed(lambda p=params: s.get(url, params=p, timeout=30))
            body = resp.json()
            assert resp.status_code == 200 and body["total"] > 0
            print(f"listing {n} records by score over HTTP, {label}: {ms:.1f} ms (total {body['total']})")
        from msmine.server.records import PairFilters

        ms, rows = timed(lambda: meta.list_pairs(PairFilters(), limit=n, offset=0).items, repeat=3)
        print(f"listing all {len(rows)} records sorted by score (store call, no HTTP): {ms:.0f} ms")
        ms, resp = timed(lambda: s.post(url.replace("/pairs", "/batches"), json={"k": 1000}, timeout=120), repeat=3)
        b = resp.json()
        print(f"top-K batch k=1000 with near-duplicate removal over {n}: {ms:.0f} ms "
              f"(examined {b['examined']}, skipped {b['skipped_duplicates']})")
    finally:
        meta.close()
        proc.terminate()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--port", type=int, default=8391)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-listing", action="store_true")
    parser.add_argument("--set", dest="server_sets", action="append", default=[], metavar="KEY=VALUE",
                        help="ServerConfig override for the server under test, e.g. fsync=false")
    args = parser.parse_args()
    SERVER_SETS.extend(args.server_sets)
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    try:
        if not args.skip_ingest:
            bench_ingest(work, args.uploads, args.clients, args.port)
        if not args.skip_listing:
            bench_listing(work, args.records, args.port + 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
