"""Fleet load and fault benchmark (issue 13): simulated devices upload real-size pairs (~2 x 100 KB
MSRS JPEGs + a heat map) to the collection server, and one replica is killed (-9) in the middle.

    .venv/bin/python bench/bench_fleet.py                       # sqlite-1, pg-1, pg-2, pg-4
    .venv/bin/python bench/bench_fleet.py --setups pg-2 --uploads 2000 --devices 64

Setups: ``sqlite-1`` is today's single `msmine serve --root` (SQLite, no proxy); ``pg-N`` is N
replicas of `msmine serve --db postgresql://...` on one throw-away PostgreSQL and one shared blob
directory behind a real nginx (tests/fleet.py), with replica 0 killed after a third of the uploads
when N >= 2. Devices are threads in a few client processes, each with the product's own client
(msmine.client), retrying transient failures as the device does.

Prints per setup: uploads/s, p50/p99 latency, errors, retries, the exactly-once count (pairs the
devices were told are stored vs. distinct records in the database), and the CPU each class of
process spent per upload over the timed window (bench/proc_cpu.py: /proc utime + stime of each
process tree, reaped children included): the client processes, nginx (master + workers), each
replica, PostgreSQL (postmaster + every backend). ``--json`` / ``--csv`` write the same figures.

PostgreSQL runs with its own durable defaults (fsync, synchronous_commit and full_page_writes on);
``--pg-fast`` runs it as the tests do (all three off) to show what the commit flush costs.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
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
from proc_cpu import CpuMeter  # noqa: E402

from msmine.client import ServerClient, UploadOutcome  # noqa: E402

log = logging.getLogger("bench_fleet")


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
    cpu0 = time.process_time()  # this process, every thread: the upload window only
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put((out, time.process_time() - cpu0))


def tokens_for(devices: list[str], meta_open) -> dict:
    """One device token each, created in this process (``msmine token create`` would start a Python
    per device: a minute of set-up per setup)."""
    from msmine.server.tokens import create_token

    store = meta_open()
    try:
        return {d: create_token(store, role="device", device_id=d)[0] for d in devices}
    finally:
        store.close()


def count_records(meta_open) -> int:
    store = meta_open()
    try:
        return store.stats().pairs
    finally:
        store.close()


def cpu_roots(pg, fleet, single) -> dict[str, tuple[int, str]]:
    roots = {}
    if single is not None:
        roots["replica 0"] = (single.proc.pid, "replica")
    if fleet is not None:
        roots["nginx"] = (fleet.nginx.pid, "nginx")
        for i, replica in enumerate(fleet.replicas):
            roots[f"replica {i}"] = (replica.proc.pid, "replica")
    if pg is not None:
        roots["postgres"] = (pg.proc.pid, "postgres")
    return roots


def start_profilers(roots: dict[str, tuple[int, str]], out_dir: Path | None, mode: str) -> list:
    """py-spy (installed separately, for profiling only) on each replica, collapsed stacks with thread
    ids to ``out_dir``. ``mode``: ``active`` (threads running or in a syscall), ``gil`` (only the
    thread holding the GIL), ``idle`` (every thread, waiting included)."""
    if out_dir is None:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    procs = []
    for label, (pid, cls) in roots.items():
        if cls == "replica":
            out = out_dir / f"{label.replace(' ', '')}-{mode}.txt"
            flag = {"active": [], "gil": ["--gil"], "idle": ["--idle"]}[mode]
            procs.append(subprocess.Popen([str(spy), "record", "--nonblocking", "--format", "raw", "-r", "200",
                                           "--threads", *flag, "-p", str(pid), "-o", str(out)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(0.5)  # attached
    return procs


def run_setup(name: str, n_devices: int, uploads: int, procs: int, pg_fast: bool = False,
              profile: Path | None = None, profile_mode: str = "active", kill: bool = True,
              keep: bool = False) -> dict:
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

            def opener():
                from msmine.server.config import ServerConfig
                from msmine.server.context import open_metadata
                return open_metadata(root, ServerConfig())

            tokens = tokens_for(devices, opener)
            single = Replica(root, "", base / "server.log", extra)
            single.proc = subprocess.Popen([sys.executable, "-m", "msmine.loop.cli", "serve", "--root", str(root),
                                            "--port", str(single.port), *extra],
                                           stdout=single.log_file(), stderr=subprocess.STDOUT)
            wait_http(single.url + "/readyz", proc=single.proc)
            url, replicas = single.url, []
        else:
            replicas_n = int(name.split("-")[1])
            pg = PostgresServer(Path(tempfile.mkdtemp(prefix="msmine-pg-")), durable=not pg_fast).__enter__()
            dsn = pg.create_database("fleet")

            def opener():
                from msmine.server.metadata_pg import PostgresMetadataStore
                return PostgresMetadataStore(dsn, max_size=2)

            tokens = tokens_for(devices, opener)
            fleet = Fleet(base / "fleet", dsn, replicas=replicas_n,
                          extra=[*extra, "--trusted-proxies", "127.0.0.1"]).__enter__()
            url, replicas = fleet.url, fleet.replicas
        chunks = [devices[i::procs] for i in range(procs)]
        ctx = mp.get_context("fork")
        barrier, queue = ctx.Barrier(procs + 1), ctx.Queue()
        workers = [ctx.Process(target=client_process, args=(url, tokens, c, i, per_device, barrier, queue))
                   for i, c in enumerate(chunks)]
        for w in workers:
            w.start()
        meter = CpuMeter(cpu_roots(pg, fleet, single))
        spies = start_profilers(meter.roots, profile / name if profile else None, profile_mode)
        barrier.wait()  # every client has built its pairs: the clock starts now
        meter.start()
        start = time.perf_counter()
        killed_at = None
        if kill and len(replicas) >= 2:
            time.sleep(max(1.0, uploads / 150 / 3))  # about a third of the way in
            meter.sample()  # the killed replica's CPU up to here
            replicas[0].kill()
            killed_at = time.perf_counter() - start
        answers = [queue.get(timeout=3600) for _ in workers]
        wall = time.perf_counter() - start
        meter.stop()
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        for w in workers:
            w.join()
        results = [r for out, _ in answers for r in out]
        ok = [r for r in results if r[0] == "ok"]
        latencies = sorted(r[2] * 1000 for r in ok)
        stored = count_records(opener)
        return {
            "setup": name, "devices": n_devices, "uploads": len(results), "ok": len(ok),
            "errors": len(results) - len(ok), "retries": sum(r[3] for r in results),
            "uploads_per_s": len(ok) / wall, "p50_ms": statistics.median(latencies) if latencies else float("nan"),
            "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
            "distinct_ok": len({r[1] for r in ok}), "stored": stored,
            "killed_replica_at_s": killed_at, "wall_s": wall, "cores": os.cpu_count(),
            **cpu_figures(meter, sum(cpu for _, cpu in answers), len(ok), wall),
        }
    finally:
        if fleet is not None:
            fleet.__exit__(None, None, None)
        if single is not None:
            single.stop()
        if pg is not None:
            pg.__exit__(None, None, None)
            shutil.rmtree(pg.base, ignore_errors=True)
        if keep:
            log.info("kept %s (server logs)", base)
        else:
            shutil.rmtree(base, ignore_errors=True)


CLASSES = ("client", "nginx", "replica", "postgres")


def cpu_figures(meter: CpuMeter, client_s: float, n_ok: int, wall: float) -> dict:
    """CPU ms per stored upload, per class and per replica, and how busy the machine's cores were."""
    per_class = {"client": client_s, **meter.per_class()}
    n = max(1, n_ok)
    out = {f"cpu_ms_{c}": 1000 * per_class.get(c, 0.0) / n for c in CLASSES}
    out["cpu_ms_server"] = sum(out[f"cpu_ms_{c}"] for c in CLASSES[1:])  # what the deployment itself costs
    out["cpu_ms_total"] = out["cpu_ms_server"] + out["cpu_ms_client"]
    out["cpu_busy"] = sum(per_class.values()) / max(wall, 1e-9) / (os.cpu_count() or 1)  # 1.0 = every core busy
    out.update({f"machine_{k}": v for k, v in meter.machine_share().items()})  # /proc/stat: every process, kernel
    out["cpu_ms_by_replica"] = {label: 1000 * s / n for label, s in meter.per_label().items()
                                if label.startswith("replica")}
    return out


def print_row(row: dict) -> None:
    lost = row["distinct_ok"] - row["stored"]
    print(f"{row['setup']:9s} {row['devices']} devices: {row['uploads_per_s']:6.1f} uploads/s, "
          f"p50 {row['p50_ms']:6.1f} ms, p99 {row['p99_ms']:7.1f} ms, errors {row['errors']}, "
          f"retries {row['retries']}, stored {row['stored']} of {row['distinct_ok']} confirmed "
          f"(lost {max(0, lost)}, duplicates {max(0, -lost)})"
          + (f", replica 0 killed at {row['killed_replica_at_s']:.1f} s" if row["killed_replica_at_s"] else ""),
          flush=True)
    replicas = ", ".join(f"{k} {v:.1f}" for k, v in row["cpu_ms_by_replica"].items())
    print(f"{'':9s} CPU ms per upload: client {row['cpu_ms_client']:.1f}, nginx {row['cpu_ms_nginx']:.1f}, "
          f"replicas {row['cpu_ms_replica']:.1f} ({replicas}), postgres {row['cpu_ms_postgres']:.1f}; "
          f"server side {row['cpu_ms_server']:.1f}, all {row['cpu_ms_total']:.1f}; "
          f"these processes kept {100 * row['cpu_busy']:.0f}% of {row['cores']} cores busy (whole machine: "
          f"busy {100 * row['machine_busy']:.0f}%, iowait {100 * row['machine_iowait']:.0f}%, "
          f"idle {100 * row['machine_idle']:.0f}%, steal {100 * row['machine_steal']:.0f}%)", flush=True)


def write_csv(path: Path, rows: list[dict]) -> None:
    flat = [{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in row.items()} for row in rows]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setups", default="sqlite-1,pg-1,pg-2,pg-4")
    ap.add_argument("--uploads", type=int, default=1024, help="uploads per setup (split over the devices)")
    ap.add_argument("--devices", type=int, default=32)
    ap.add_argument("--procs", type=int, default=4, help="client processes (devices are threads in them)")
    ap.add_argument("--no-kill", action="store_true",
                    help="kill no replica (throughput with every replica up; default: kill replica 0 mid-run)")
    ap.add_argument("--pg-fast", action="store_true",
                    help="PostgreSQL with fsync, synchronous_commit and full_page_writes off (as the tests run it)")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="py-spy each replica over the timed window (collapsed stacks under DIR/SETUP/)")
    ap.add_argument("--profile-mode", choices=("active", "gil", "idle"), default="active",
                    help="with --profile: threads running (default), only the GIL holder, or every thread")
    ap.add_argument("--keep", action="store_true", help="keep each setup's folder (server logs, blobs)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    ap.add_argument("--csv", type=Path, help="also write the figures as CSV (one row per setup)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for name in args.setups.split(","):
        row = run_setup(name.strip(), args.devices, args.uploads, args.procs, pg_fast=args.pg_fast,
                        profile=args.profile, profile_mode=args.profile_mode,
                        kill=not args.no_kill, keep=args.keep)
        row["pg_durable"] = not args.pg_fast if name.startswith("pg") else None
        rows.append(row)
        print_row(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.csv and rows:
        write_csv(args.csv, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
