"""Fleet load and fault benchmark (issue 13): simulated devices upload real-size pairs (~2 x 100 KB
MSRS JPEGs + a heat map) to the collection server, and one replica is killed (-9) in the middle.

    .venv/bin/python bench/bench_fleet.py                       # sqlite-1, pg-1, pg-2, pg-4
    .venv/bin/python bench/bench_fleet.py --setups pg-2 --uploads 2000 --devices 64

Setups: ``sqlite-1`` is today's single `msmine serve --root` (SQLite, no proxy); ``pg-N`` is N
replicas of `msmine serve --db postgresql://...` on one throw-away PostgreSQL and one shared blob
directory behind a real nginx (tests/fleet.py), with replica 0 killed after a third of the uploads
when N >= 2. Devices are threads in a few client processes, each with the product's own client
(msmine.client), retrying transient failures as the device does.

Prints per setup: uploads/s, p50/p99 latency, errors, retries, and the exactly-once count (pairs
the devices were told are stored vs. distinct records in the database).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from bench_server import build_pairs  # noqa: E402

from msmine.client import ServerClient, UploadOutcome  # noqa: E402


def device_worker(url: str, token: str, uploads: list, out: list) -> None:
    client = ServerClient(url, token, timeout=30)
    for manifest, files in uploads:
        start = time.perf_counter()
        retries = 0
        while True:
            result = client.upload_pair(manifest, files)
            if result.ok:
                out.append(("ok", manifest["upload_id"], time.perf_counter() - start, retries))
                break
            if result.outcome is not UploadOutcome.TRANSIENT or retries >= 100:
                out.append(("error", manifest["upload_id"], time.perf_counter() - start, retries))
                break
            retries += 1
            time.sleep(min(2.0, 0.05 * 2 ** min(retries, 5)))


def client_process(url, tokens, devices, seed, per_device, barrier, queue) -> None:
    """Build this process's pairs first (outside the timed window), wait for the start, upload."""
    work = {d: build_pairs(per_device, d, seed * 1000 + i) for i, d in enumerate(devices)}
    out: list = []
    threads = [threading.Thread(target=device_worker, args=(url, tokens[d], work[d], out)) for d in devices]
    barrier.wait()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(out)


def tokens_for(devices: list[str], where: list[str]) -> dict:
    tokens = {}
    for d in devices:
        proc = subprocess.run([sys.executable, "-m", "msmine.loop.cli", "token", "create", *where, "--device", d,
                               "--json"], capture_output=True, text=True, check=True)
        tokens[d] = json.loads(proc.stdout)["token"]
    return tokens


def count_records(where: list[str], meta_open) -> int:
    store = meta_open()
    try:
        return store.stats().pairs
    finally:
        store.close()


def run_setup(name: str, n_devices: int, uploads: int, procs: int) -> dict:
    from tests.fleet import Fleet, Replica, wait_http
    from tests.pgserver import PostgresServer

    base = Path(tempfile.mkdtemp(prefix=f"msmine-fleet-{name}-"))
    devices = [f"dev-{i:03d}" for i in range(n_devices)]
    per_device = max(1, uploads // n_devices)
    pg = fleet = single = None
    extra = ["--rate-limit", "0", "--set", "max_connections_per_client=0", "--set", "fsync=true"]
    try:
        if name == "sqlite-1":
            root = base / "root"
            where = ["--root", str(root)]
            tokens = tokens_for(devices, where)
            single = Replica(root, "", base / "server.log", extra)
            single.proc = subprocess.Popen([sys.executable, "-m", "msmine.loop.cli", "serve", "--root", str(root),
                                            "--port", str(single.port), *extra],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_http(single.url + "/readyz", proc=single.proc)
            url, replicas = single.url, []

            def opener():
                from msmine.server.config import ServerConfig
                from msmine.server.context import open_metadata
                return open_metadata(root, ServerConfig())
        else:
            replicas_n = int(name.split("-")[1])
            pg = PostgresServer(Path(tempfile.mkdtemp(prefix="msmine-pg-"))).__enter__()
            dsn = pg.create_database("fleet")
            where = ["--db", dsn]
            tokens = tokens_for(devices, where)
            fleet = Fleet(base / "fleet", dsn, replicas=replicas_n,
                          extra=[*extra, "--trusted-proxies", "127.0.0.1"]).__enter__()
            url, replicas = fleet.url, fleet.replicas

            def opener():
                from msmine.server.metadata_pg import PostgresMetadataStore
                return PostgresMetadataStore(dsn, max_size=2)
        chunks = [devices[i::procs] for i in range(procs)]
        ctx = mp.get_context("fork")
        barrier, queue = ctx.Barrier(procs + 1), ctx.Queue()
        workers = [ctx.Process(target=client_process, args=(url, tokens, c, i, per_device, barrier, queue))
                   for i, c in enumerate(chunks)]
        for w in workers:
            w.start()
        barrier.wait()  # every client has built its pairs: the clock starts now
        start = time.perf_counter()
        killed_at = None
        if len(replicas) >= 2:
            time.sleep(max(1.0, uploads / 150 / 3))  # about a third of the way in
            replicas[0].kill()
            killed_at = time.perf_counter() - start
        results = [r for _ in workers for r in queue.get(timeout=3600)]
        for w in workers:
            w.join()
        wall = time.perf_counter() - start
        ok = [r for r in results if r[0] == "ok"]
        latencies = sorted(r[2] * 1000 for r in ok)
        stored = count_records(where, opener)
        return {
            "setup": name, "devices": n_devices, "uploads": len(results), "ok": len(ok),
            "errors": len(results) - len(ok), "retries": sum(r[3] for r in results),
            "uploads_per_s": len(ok) / wall, "p50_ms": statistics.median(latencies) if latencies else float("nan"),
            "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
            "distinct_ok": len({r[1] for r in ok}), "stored": stored,
            "killed_replica_at_s": killed_at, "wall_s": wall,
        }
    finally:
        if fleet is not None:
            fleet.__exit__(None, None, None)
        if single is not None:
            single.stop()
        if pg is not None:
            pg.__exit__(None, None, None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setups", default="sqlite-1,pg-1,pg-2,pg-4")
    ap.add_argument("--uploads", type=int, default=1024, help="uploads per setup (split over the devices)")
    ap.add_argument("--devices", type=int, default=32)
    ap.add_argument("--procs", type=int, default=4, help="client processes (devices are threads in them)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = ap.parse_args()
    rows = []
    for name in args.setups.split(","):
        row = run_setup(name.strip(), args.devices, args.uploads, args.procs)
        rows.append(row)
        lost = row["distinct_ok"] - row["stored"]
        print(f"{row['setup']:9s} {row['devices']} devices: {row['uploads_per_s']:6.1f} uploads/s, "
              f"p50 {row['p50_ms']:6.1f} ms, p99 {row['p99_ms']:7.1f} ms, errors {row['errors']}, "
              f"retries {row['retries']}, stored {row['stored']} of {row['distinct_ok']} confirmed "
              f"(lost {max(0, lost)}, duplicates {max(0, -lost)})"
              + (f", replica 0 killed at {row['killed_replica_at_s']:.1f} s" if row["killed_replica_at_s"] else ""),
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
