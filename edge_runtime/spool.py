"""The durable spool: every kept pair is on disk before it counts as kept.

Layout of ``--spool-dir``::

    index.sqlite                    SQLite (WAL, synchronous=FULL): one row per pair (manifest, score, state)
    items/<upload_id>.<part>        the encoded files (visible, thermal, heatmap)
    items/<upload_id>.manifest.json the pair's manifest (so the index can be rebuilt from the files)
    tmp/                            files being written (cleared at start)
    damaged/                        a corrupt index moved aside, pair files that fail their manifest

A pair is written file by file to ``tmp/`` (write, fsync), atomically renamed into ``items/`` (the
manifest last), the directory fsync'ed, and only then its row is committed: the row is the commit
point. After a ``kill -9`` or power loss the spool reopens clean: half-written files (no manifest
file) are removed, rows whose files are gone are dropped.

The index is only an index: the pair files carry their manifests. When ``index.sqlite`` is lost,
emptied or corrupt (``PRAGMA quick_check`` at open), it is moved aside and rebuilt from the files;
every complete pair whose files match its manifest's hashes goes back in the queue, nothing is
deleted. A full disk stops spooling (each pair it could not store is counted, logged once) while the
uploader keeps draining; spooling resumes by itself when space is back, and a restart on a full disk
opens the spool to drain it.

Pairs are evicted, and uploaded, by their *selection* score (``msmine.wire.selection_score``): when
the spool would exceed ``max_bytes`` the lowest-scoring pairs go first (a new pair scoring below all
of them is not stored; both count as evicted), and the uploader sends the highest first.

States: ``pending`` (waiting for upload), ``refused`` (the server refused it for good: 400/401/403/
409/413/422; kept with its reason, not retried until :meth:`requeue_refused`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from msmine import wire
from msmine.durable import fsync_dir
from msmine.errors import UserError

log = logging.getLogger(__name__)

INDEX = "index.sqlite"
MANIFEST_FILE = "manifest.json"  # items/<upload_id>.manifest.json
_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    upload_id TEXT PRIMARY KEY,
    score REAL NOT NULL,
    created REAL NOT NULL,
    bytes INTEGER NOT NULL,
    manifest TEXT NOT NULL,
    parts TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    reason TEXT,
    refused_key TEXT
);
CREATE INDEX IF NOT EXISTS items_score ON items(state, score);
CREATE TABLE IF NOT EXISTS kept_log (created REAL NOT NULL);
"""
KEPT_LOG_DAYS = 2  # how long the log of kept pairs (for the budget across restarts) is kept
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def _is_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in FULL_ERRNOS
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()


def _is_corrupt(exc: BaseException) -> bool:
    """SQLITE_CORRUPT / SQLITE_NOTADB (not a full disk, a lock or a permission problem)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    text = str(exc).lower()
    return not isinstance(exc, sqlite3.OperationalError) or "malformed" in text or "not a database" in text


@dataclass
class SpoolItem:
    upload_id: str  # the manifest's content-hash id
    score: float  # the selection score (what eviction and upload order use)
    bytes: int  # total size of the files
    manifest: dict  # the manifest as uploaded
    parts: list[str]  # file parts ("visible", "thermal", "heatmap")


class Spool:
    def __init__(self, root: str | Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.items_dir = self.root / "items"
        self.tmp_dir = self.root / "tmp"
        self.damaged_dir = self.root / "damaged"
        self.evicted = 0
        self.disk_full = False  # the last write failed for lack of space (cleared by the next good one)
        self.disk_full_skipped = 0  # pairs not stored because the disk was full
        self.rebuilt = 0  # pairs put back in the index from their files at open
        self.index_problem = ""  # why the index was rebuilt ("" if it was not)
        self._check_writable()
        self._lock = threading.Lock()
        self._db = self._open_index()
        self._recover()

    # -- opening -------------------------------------------------------------------------------

    def _check_writable(self) -> None:
        """A spool that cannot be written is a user error, unless it is only full: then it opens to drain."""
        try:
            for d in (self.root, self.items_dir, self.tmp_dir):
                d.mkdir(parents=True, exist_ok=True)
            probe = self.tmp_dir / ".write-test"
            try:
                probe.write_bytes(b"ok")
            finally:
                probe.unlink(missing_ok=True)
        except OSError as exc:
            if _is_full(exc) and self.items_dir.is_dir():
                self.disk_full = True
                log.error("spool %s: disk full at start (%s); uploading spooled pairs first, spooling resumes "
                          "when space is freed", self.root, exc.strerror or exc)
                return
            raise UserError(f"spool directory {self.root} is not writable: {exc.strerror or exc}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.root / INDEX, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _open_index(self) -> sqlite3.Connection:
        db = None
        try:
            db = self._connect()
            check = db.execute("PRAGMA quick_check").fetchall()
            if [r[0] for r in check] != ["ok"]:
                raise sqlite3.DatabaseError("quick_check: " + "; ".join(str(r[0]) for r in check[:3]))
            self._create_schema(db)
            return db
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            if not _is_corrupt(exc):
                raise UserError(f"spool index {self.root / INDEX} cannot be opened: {exc}") from None
            self.index_problem = str(exc)
        aside = self._move_index_aside()
        log.error("spool index %s is damaged (%s); moved it to %s, rebuilding it from the pair files",
                  self.root / INDEX, self.index_problem, aside)
        try:
            db = self._connect()
            self._create_schema(db)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"spool index {self.root / INDEX} cannot be rebuilt: {exc}") from None
        return db

    @staticmethod
    def _create_schema(db: sqlite3.Connection) -> None:
        db.executescript(_SCHEMA)
        columns = {r[1] for r in db.execute("PRAGMA table_info(items)")}
        for column in ("reason", "refused_key"):  # spools written before refusals were set aside
            if column not in columns:
                db.execute(f"ALTER TABLE items ADD COLUMN {column} TEXT")
        db.execute("UPDATE items SET state = 'refused' WHERE state = 'rejected'")

    def _move_index_aside(self) -> Path:
        self.damaged_dir.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.damaged_dir / f"{INDEX}.{stamp}"
        for suffix in ("", "-wal", "-shm"):
            src = self.root / (INDEX + suffix)
            if src.exists():
                os.replace(src, self.damaged_dir / f"{INDEX}.{stamp}{suffix}")
        return target

    # -- start-up recovery ---------------------------------------------------------------------

    def _recover(self) -> None:
        for tmp in self.tmp_dir.iterdir():
            tmp.unlink(missing_ok=True)
        try:
            self._db.execute("DELETE FROM kept_log WHERE created < ?", (time.time() - KEPT_LOG_DAYS * 86400,))
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
        rows = self._db.execute("SELECT upload_id, parts, manifest FROM items").fetchall()
        known = set()
        for upload_id, parts, manifest in rows:
            paths = [self._path(upload_id, p) for p in json.loads(parts)]
            if all(p.is_file() for p in paths):
                known.update(p.name for p in paths)
                known.add(self._path(upload_id, MANIFEST_FILE).name)
                self._ensure_manifest_file(upload_id, manifest)
            else:  # the files went (a delete cut short, or removed by hand): nothing left to upload
                log.warning("spool: files of %s are missing; dropping it", upload_id)
                try:
                    self._db.execute("DELETE FROM items WHERE upload_id = ?", (upload_id,))
                except sqlite3.OperationalError as exc:
                    if not _is_full(exc):
                        raise
                    continue  # dropped at a start with room; the uploader skips it meanwhile
                self._unlink(upload_id, [MANIFEST_FILE, *json.loads(parts)])
        groups: dict[str, list[Path]] = {}
        for p in self.items_dir.iterdir():
            if p.name not in known:
                groups.setdefault(p.name.split(".", 1)[0], []).append(p)
        removed = 0
        for upload_id, paths in sorted(groups.items()):
            if self._path(upload_id, MANIFEST_FILE) in paths:
                if not self._rebuild_one(upload_id, paths):
                    break  # no room to index more: the rest stay on disk for the next start
            else:  # no manifest file: a write that never finished (the manifest is renamed last)
                for p in paths:
                    p.unlink(missing_ok=True)
                removed += len(paths)
        if self.rebuilt:
            log.warning("spool %s: rebuilt the index entry of %d pair(s) from their files", self.root, self.rebuilt)
        if rows or groups:
            log.info("spool %s: resuming with %d pair(s), %d byte(s); removed %d file(s) of unfinished writes",
                     self.root, self.count(), self.total_bytes(), removed)

    def _ensure_manifest_file(self, upload_id: str, manifest: str) -> None:
        """Spools written before manifests were kept beside the files: add the file (when there is room)."""
        path = self._path(upload_id, MANIFEST_FILE)
        if path.exists():
            return
        try:
            self._write_file(path, manifest.encode())
        except OSError as exc:
            log.debug("cannot add the manifest file of %s: %s", upload_id[:12], exc)

    def _rebuild_one(self, upload_id: str, paths: list[Path]) -> bool:
        """Put a complete pair found on disk (without an index row) back into the index; False: disk full."""
        mpath = self._path(upload_id, MANIFEST_FILE)
        try:
            manifest = wire.parse_manifest(mpath.read_bytes())
            if manifest["upload_id"] != upload_id:
                raise wire.WireError(f"manifest is for {manifest['upload_id'][:12]}")
            size = 0
            for part in wire.FILE_PARTS:
                data = self._path(upload_id, part).read_bytes()
                wire.verify_file(manifest, part, data)
                size += len(data)
            for branch, part in wire.mask_parts(manifest).items():
                data = self._path(upload_id, part).read_bytes()
                wire.verify_mask_file(manifest, branch, data)
                size += len(data)
        except (OSError, wire.WireError) as exc:
            self.damaged_dir.mkdir(exist_ok=True)
            for p in paths:
                os.replace(p, self.damaged_dir / p.name)
            log.warning("spool: pair files of %s do not match their manifest (%s); moved to %s", upload_id[:12], exc,
                        self.damaged_dir)
            return True
        created = mpath.stat().st_mtime
        try:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR IGNORE INTO items (upload_id, score, created, bytes, manifest, parts) VALUES (?, ?, ?, ?, ?, ?)",
                (upload_id, wire.selection_score(manifest), created, size, json.dumps(manifest),
                 json.dumps(list(wire.upload_parts(manifest)))),
            )
            self._db.execute("INSERT INTO kept_log (created) VALUES (?)", (created,))
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if not _is_full(exc):
                raise
            log.error("spool: disk full while rebuilding the index; %d pair(s) indexed, the others stay on disk and "
                      "are indexed at the next start with room", self.rebuilt)
            return False
        self.rebuilt += 1
        return True

    def _path(self, upload_id: str, part: str) -> Path:
        return self.items_dir / f"{upload_id}.{part}"

    # -- writing -------------------------------------------------------------------------------

    def _write_file(self, target: Path, data: bytes) -> None:
        """Write ``data`` durably to ``target`` through tmp/ (the seam the disk-full tests use)."""
        tmp = self.tmp_dir / (target.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put(self, manifest: dict, files: dict[str, bytes]) -> bool:
        """Store a pair durably; False if it was not stored (already there, evicted for space, disk full)."""
        upload_id = manifest["upload_id"]
        size = sum(len(b) for b in files.values())
        score = wire.selection_score(manifest)
        with self._lock:
            if self._db.execute("SELECT 1 FROM items WHERE upload_id = ?", (upload_id,)).fetchone():
                return False
            if not self._make_room(size, score):
                self.evicted += 1
                log.info("spool full: pair %s (score %.4f) is below every spooled pair; not stored", upload_id[:12], score)
                return False
        names = [*files, MANIFEST_FILE]
        try:
            for part, data in files.items():
                self._write_file(self._path(upload_id, part), data)
            self._write_file(self._path(upload_id, MANIFEST_FILE), wire.canonical_json(manifest))  # last: complete
            fsync_dir(self.items_dir)
            now = time.time()
            with self._lock:
                try:
                    self._db.execute("BEGIN")
                    self._db.execute(
                        "INSERT OR IGNORE INTO items (upload_id, score, created, bytes, manifest, parts) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (upload_id, score, now, size, json.dumps(manifest), json.dumps(list(files))),
                    )
                    self._db.execute("INSERT INTO kept_log (created) VALUES (?)", (now,))
                    self._db.execute("COMMIT")
                except sqlite3.Error:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
        except (OSError, sqlite3.OperationalError) as exc:
            self._unlink(upload_id, names)
            if not _is_full(exc):
                raise
            self.disk_full_skipped += 1
            if not self.disk_full:
                log.error("spool disk full (%s): not spooling new pairs until space is freed; uploads go on", exc)
            self.disk_full = True
            return False
        if self.disk_full:
            log.warning("spool disk has room again: spooling resumed (%d pair(s) not stored while it was full)",
                        self.disk_full_skipped)
            self.disk_full = False
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

    def _unlink(self, upload_id: str, parts: list[str]) -> None:
        for part in parts:
            self._path(upload_id, part).unlink(missing_ok=True)

    def _remove(self, upload_id: str, parts: list[str]) -> None:
        """Files first (the manifest first of all: what remains is an unfinished write), then the row.

        On a full disk the unlinks free the room the index needs to record the delete."""
        self._unlink(upload_id, [MANIFEST_FILE, *parts])
        try:
            self._db.execute("DELETE FROM items WHERE upload_id = ?", (upload_id,))
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            time.sleep(0.05)
            self._db.execute("DELETE FROM items WHERE upload_id = ?", (upload_id,))

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

    def refuse(self, upload_id: str, reason: str, key: str = "") -> None:
        """The server refused this pair for good: set it aside with the reason; it is not retried until requeued.

        ``key`` names the identity it was refused under (token, device id, server); see :meth:`requeue_refused`."""
        with self._lock:
            self._db.execute("UPDATE items SET state = 'refused', reason = ?, refused_key = ? WHERE upload_id = ?",
                             (reason[:500], key, upload_id))

    def refused(self) -> list[tuple[str, str]]:
        """``(upload_id, reason)`` of every pair set aside."""
        with self._lock:
            return [(r[0], r[1] or "") for r in
                    self._db.execute("SELECT upload_id, reason FROM items WHERE state = 'refused' ORDER BY created")]

    def requeue_refused(self, device_id: str | None = None, unless_key: str | None = None) -> int:
        """Put refused pairs back in the upload queue; the number requeued.

        ``unless_key``: only pairs refused under another identity (so a restart with a fixed token or
        device id retries them, an unchanged one does not). ``device_id``: re-address pairs whose
        manifest names another device (a new manifest and upload id; the files are kept, hard-linked)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT upload_id, manifest, parts, refused_key FROM items WHERE state = 'refused'").fetchall()
        n = 0
        for upload_id, manifest_text, parts, key in rows:
            if unless_key is not None and (key or "") == unless_key:
                continue
            manifest = json.loads(manifest_text)
            if device_id and manifest["device_id"] != device_id:
                self._readdress(upload_id, manifest, json.loads(parts), device_id)
            else:
                with self._lock:
                    self._db.execute("UPDATE items SET state = 'pending', reason = NULL, refused_key = NULL "
                                     "WHERE upload_id = ?", (upload_id,))
            n += 1
        return n

    def _readdress(self, upload_id: str, manifest: dict, parts: list[str], device_id: str) -> None:
        """The same pair under another device id: link the files to the new id, swap the rows, drop the old names."""
        new = dict(manifest, device_id=device_id)
        new.pop("upload_id")
        new["upload_id"] = wire.compute_upload_id(new)
        wire.validate_manifest(new)
        new_id = new["upload_id"]
        for part in parts:
            target = self._path(new_id, part)
            if not target.exists():
                try:
                    os.link(self._path(upload_id, part), target)
                except OSError:  # a file system without hard links (FAT): copy
                    self._write_file(target, self._path(upload_id, part).read_bytes())
        self._write_file(self._path(new_id, MANIFEST_FILE), wire.canonical_json(new))
        fsync_dir(self.items_dir)
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR IGNORE INTO items (upload_id, score, created, bytes, manifest, parts) "
                "SELECT ?, score, created, bytes, ?, parts FROM items WHERE upload_id = ?",
                (new_id, json.dumps(new), upload_id))
            self._db.execute("DELETE FROM items WHERE upload_id = ?", (upload_id,))
            self._db.execute("COMMIT")
        self._unlink(upload_id, [MANIFEST_FILE, *parts])
        log.info("spool: pair %s re-addressed to device %s as %s", upload_id[:12], device_id, new_id[:12])

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
