"""The durable spool: every kept pair is on disk before it counts as kept.

Layout of ``--spool-dir``::

    index.sqlite              SQLite (WAL, synchronous=FULL): one row per pair (manifest, score, bytes)
    items/<upload_id>.<part>  the encoded files (visible, thermal, heatmap)
    tmp/                      files being written (cleared at start)

A pair is written file by file to ``tmp/`` (write, fsync), atomically renamed into ``items/``, the
directory fsync'ed, and only then its row is committed: the row is the commit point. After a
``kill -9`` or power loss the spool reopens clean: half-written files and files without a row are
removed, rows whose files are gone are dropped. When the spool would exceed ``max_bytes``, the
lowest-scoring pairs are evicted first (a new pair scoring below all of them is not stored);
both count as evicted.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from msmine.durable import fsync_dir
from msmine.errors import UserError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    upload_id TEXT PRIMARY KEY,
    score REAL NOT NULL,
    created REAL NOT NULL,
    bytes INTEGER NOT NULL,
    manifest TEXT NOT NULL,
    parts TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
);
CREATE INDEX IF NOT EXISTS items_score ON items(state, score);
CREATE TABLE IF NOT EXISTS kept_log (created REAL NOT NULL);
"""
KEPT_LOG_DAYS = 2  # how long the log of kept pairs (for the budget across restarts) is kept


@dataclass
class SpoolItem:
    upload_id: str  # the manifest's content-hash id
    score: float  # the manifest's score
    bytes: int  # total size of the files
    manifest: dict  # the manifest as uploaded
    parts: list[str]  # file parts ("visible", "thermal", "heatmap")


class Spool:
    def __init__(self, root: str | Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.items_dir = self.root / "items"
        self.tmp_dir = self.root / "tmp"
        try:
            for d in (self.root, self.items_dir, self.tmp_dir):
                d.mkdir(parents=True, exist_ok=True)
            probe = self.tmp_dir / ".write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"spool directory {self.root} is not writable: {exc.strerror or exc}") from None
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.root / "index.sqlite", check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise UserError(f"spool index {self.root / 'index.sqlite'} cannot be opened: {exc}") from None
        self.evicted = 0
        self._recover()

    # -- start-up recovery ---------------------------------------------------------------------

    def _recover(self) -> None:
        self._db.execute("DELETE FROM kept_log WHERE created < ?", (time.time() - KEPT_LOG_DAYS * 86400,))
        for tmp in self.tmp_dir.iterdir():
            tmp.unlink(missing_ok=True)
        rows = self._db.execute("SELECT upload_id, parts FROM items").fetchall()
        known = set()
        for upload_id, parts in rows:
            paths = [self._path(upload_id, p) for p in json.loads(parts)]
            if all(p.is_file() for p in paths):
                known.update(p.name for p in paths)
            else:
                log.warning("spool: files of %s are missing; dropping it", upload_id)
                self._db.execute("DELETE FROM items WHERE upload_id = ?", (upload_id,))
        orphans = [p for p in self.items_dir.iterdir() if p.name not in known]
        for p in orphans:
            p.unlink(missing_ok=True)
        if rows or orphans:
            log.info("spool %s: resuming with %d pair(s), %d byte(s); removed %d orphan file(s)",
                     self.root, self.count(), self.total_bytes(), len(orphans))

    def _path(self, upload_id: str, part: str) -> Path:
        return self.items_dir / f"{upload_id}.{part}"

    # -- writing -------------------------------------------------------------------------------

    def put(self, manifest: dict, files: dict[str, bytes]) -> bool:
        """Store a pair durably; False if it was not stored (already there, or evicted for space)."""
        upload_id = manifest["upload_id"]
        size = sum(len(b) for b in files.values())
        score = float(manifest["score"])
        with self._lock:
            if self._db.execute("SELECT 1 FROM items WHERE upload_id = ?", (upload_id,)).fetchone():
                return False
            if not self._make_room(size, score):
                self.evicted += 1
                log.info("spool full: pair %s (score %.4f) is below every spooled pair; not stored", upload_id[:12], score)
                return False
        for part, data in files.items():
            tmp = self.tmp_dir / f"{upload_id}.{part}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path(upload_id, part))
        fsync_dir(self.items_dir)
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR IGNORE INTO items (upload_id, score, created, bytes, manifest, parts) VALUES (?, ?, ?, ?, ?, ?)",
                (upload_id, score, now, size, json.dumps(manifest), json.dumps(list(files))),
            )
            self._db.execute("INSERT INTO kept_log (created) VALUES (?)", (now,))
            self._db.execute("COMMIT")
        return True

    def kept_since(self, t: float) -> int:
        """How many pairs were kept (spooled) since unix time ``t``, uploaded or not (budget across restarts)."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM kept_log WHERE created >= ?", (t,)).fetchone()[0])

    def _make_room(self, size: int, score: float) -> bool:
        """Evict lowest-scoring pairs until ``size`` more bytes fit (caller holds the lock)."""
        if size > self.max_bytes:
            return False
        while self._total_bytes() + size > self.max_bytes:
            row = self._db.execute("SELECT upload_id, score, parts FROM items ORDER BY score ASC, created DESC LIMIT 1").fetchone()
            if row is None or row[1] >= score:
                return False
            self._remove(row[0], json.loads(row[2]))
            self.evicted += 1
            log.info("spool full: evicted pair %s (score %.4f)", row[0][:12], row[1])
        return True

    def _remove(self, upload_id: str, parts: list[str]) -> None:
        self._db.execute("DELETE FROM items WHERE upload_id = ?", (upload_id,))
        for part in parts:
            self._path(upload_id, part).unlink(missing_ok=True)

    # -- reading / deleting (the uploader) -----------------------------------------------------

    def next_pending(self, exclude: set[str] | None = None) -> SpoolItem | None:
        """The highest-scoring pair waiting for upload."""
        exclude = exclude or set()
        with self._lock:
            rows = self._db.execute(
                "SELECT upload_id, score, bytes, manifest, parts FROM items WHERE state = 'pending' "
                "ORDER BY score DESC, created ASC LIMIT ?", (len(exclude) + 1,)
            ).fetchall()
        for upload_id, score, size, manifest, parts in rows:
            if upload_id not in exclude:
                return SpoolItem(upload_id, score, size, json.loads(manifest), json.loads(parts))
        return None

    def read_files(self, item: SpoolItem) -> dict[str, bytes] | None:
        """The pair's files, or None when it was evicted meanwhile."""
        try:
            return {part: self._path(item.upload_id, part).read_bytes() for part in item.parts}
        except FileNotFoundError:
            return None

    def delete(self, upload_id: str) -> None:
        with self._lock:
            row = self._db.execute("SELECT parts FROM items WHERE upload_id = ?", (upload_id,)).fetchone()
            if row is not None:
                self._remove(upload_id, json.loads(row[0]))

    def reject(self, upload_id: str) -> None:
        """The server refused this pair for good (malformed): keep it for inspection, stop retrying."""
        with self._lock:
            self._db.execute("UPDATE items SET state = 'rejected' WHERE upload_id = ?", (upload_id,))

    def ids(self, state: str = "pending") -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT upload_id FROM items WHERE state = ?", (state,))]

    def count(self, state: str = "pending") -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM items WHERE state = ?", (state,)).fetchone()[0])

    def _total_bytes(self) -> int:
        return int(self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM items").fetchone()[0])

    def total_bytes(self) -> int:
        with self._lock:
            return self._total_bytes()

    def close(self) -> None:
        with self._lock:
            self._db.close()
