"""Metadata-store figures over a generated fleet-sized set (issue 13: 1,000,000 records).

    .venv/bin/python bench/bench_store.py --backend postgres --records 1000000
    .venv/bin/python bench/bench_store.py --backend sqlite --records 1000000
    .venv/bin/python bench/bench_store.py --backend postgres --db postgresql://u@host/db   # an existing server

Without --db, a throw-away PostgreSQL is started (tests/pgserver.py; Debian's postgresql package).
Prints: bulk load time; first page, deep page (offset) and keyset-page listing latencies (median of
repeats); filtered listing; a top-1,000 near-duplicate-free batch (server.ranking.select_batch).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from msmine.server.metadata import _INSERT_COLUMNS, SqliteMetadataStore  # noqa: E402
from msmine.server.ranking import select_batch  # noqa: E402
from msmine.server.records import PairFilters  # noqa: E402


def rows(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    scores = rng.random(n).astype(float)
    hv = rng.integers(-(1 << 63), (1 << 63) - 1, n, dtype=np.int64)
    ht = rng.integers(-(1 << 63), (1 << 63) - 1, n, dtype=np.int64)
    for i in range(n):
        uid = hashlib.sha256(i.to_bytes(8, "little")).hexdigest()
        files = json.dumps({"visible": {"sha256": uid, "bytes": 100000, "media_type": "image/jpeg"}})
        sel = float(scores[i]) if i % 2 else None
        yield (uid, f"pole-{i % 300}", 1.7e9 + i, 1.7e9 + i + 1, float(scores[i]), f"m{i % 3}", "detect", 640, 480,
               0, "entropy" if sel is not None else None, sel, files, int(hv[i]), int(ht[i]), "{}",
               sel if sel is not None else float(scores[i]))


def load_sqlite(path: Path, n: int) -> SqliteMetadataStore:
    store = SqliteMetadataStore(path)
    conn = store._read()
    conn.execute("BEGIN")
    conn.executemany(f"INSERT INTO pairs ({_INSERT_COLUMNS}) VALUES ({', '.join('?' * 17)})", rows(n))
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    return store


def load_postgres(dsn: str, n: int):
    from msmine.server.metadata_pg import PostgresMetadataStore

    store = PostgresMetadataStore(dsn, max_size=4)
    with store._pool.connection() as conn:
        # a bulk load, as a restore would do it: the per-row count trigger off, the counts rebuilt once
        conn.execute("ALTER TABLE pairs DISABLE TRIGGER pairs_count")
        with conn.cursor() as cur, cur.copy(f"COPY pairs ({_INSERT_COLUMNS}) FROM STDIN") as copy:
            for row in rows(n):
                copy.write_row(row)
        conn.execute("ALTER TABLE pairs ENABLE TRIGGER pairs_count")
        conn.execute("DELETE FROM pair_counts")
        conn.execute("INSERT INTO pair_counts SELECT device_id, model_version, labelled, COUNT(*) FROM pairs "
                     "GROUP BY device_id, model_version, labelled")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE pairs")
        conn.autocommit = False
    return store


def timed(fn, repeats: int = 7) -> float:
    fn()  # warm
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="postgres")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--db", help="an existing PostgreSQL DSN (default: start a throw-away server)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="msmine-bench-store-"))
    pg = None
    t0 = time.perf_counter()
    if args.backend == "sqlite":
        store = load_sqlite(tmp / "meta.sqlite3", args.records)
    else:
        dsn = args.db
        if dsn is None:
            from tests.pgserver import PostgresServer

            pg = PostgresServer(Path(tempfile.mkdtemp(prefix="msmine-pg-"))).__enter__()
            dsn = pg.create_database("bench")
        store = load_postgres(dsn, args.records)
    load_s = time.perf_counter() - t0
    none = PairFilters()
    first = timed(lambda: store.list_pairs(none, 50, 0))
    deep = timed(lambda: store.list_pairs(none, 50, args.records // 2), repeats=3)
    last = store.list_pairs(none, 50, 0).items[-1]
    from msmine.server.records import decode_cursor

    mid = decode_cursor(store.list_pairs(none, 50, args.records // 2).next_after)
    keyset = timed(lambda: store.list_pairs(none, 50, after=mid))
    device = timed(lambda: store.list_pairs(PairFilters(device="pole-7", min_score=0.5), 50, 0))
    batch = timed(lambda: select_batch(store, none, 1000, 6), repeats=3)
    picked = select_batch(store, none, 1000, 6)
    print(f"backend {args.backend}, {args.records:,} records (load {load_s:.1f} s)")
    print(f"  first page (50, with total)       {first:8.1f} ms")
    print(f"  deep page by offset {args.records // 2:,} {deep:8.1f} ms")
    print(f"  deep keyset page (50, cursor at {args.records // 2:,}, with total) {keyset:8.1f} ms")
    print(f"  device + min_score filter page    {device:8.1f} ms")
    print(f"  top-1,000 deduplicated batch      {batch:8.1f} ms ({picked.examined} examined, "
          f"{picked.skipped_duplicates} near-duplicates skipped)")
    print(f"  (last of first page: rank {last.rank_score:.4f})")
    store.close()
    if pg is not None:
        pg.__exit__(None, None, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
