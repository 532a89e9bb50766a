"""Metadata storage: :class:`MetadataStore` is the interface (the storage seam), :class:`SqliteMetadataStore`
the embedded default (one SQLite file in WAL mode under the server root).

The seam, which a PostgreSQL backend implements the same way:

* it takes and returns plain records (:mod:`msmine.server.records` dataclasses), never rows, driver
  types or HTTP-shaped dicts; the routes build the JSON;
* it raises only :mod:`msmine.server.errors` exceptions (:class:`DuplicateError` for a key that exists,
  :class:`NotFoundError` for a reference to a missing record, :class:`StoreError` for anything else
  the database reports); no caller imports a driver;
* an upload id seen twice is not an error: :meth:`MetadataStore.insert_pair` answers False (an
  ``INSERT ... ON CONFLICT DO NOTHING`` whose row count is 0), so a concurrent duplicate is decided by
  the database, not by matching its error text;
* every write is one transaction; an upload becomes visible only when its row commits, after its
  files are in place;
* pairs rank by :attr:`PairSummary.rank_score` (the device's selection score when it sent one, else
  the inconsistency score), highest first, ties by upload id.

Schema changes are the versioned migrations of :mod:`msmine.server.migrations`, applied in place when
a store opens (:meth:`SqliteMetadataStore._migrate`), so an existing root keeps working.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from msmine.server import migrations
from msmine.server.errors import DuplicateError, NotFoundError, StoreError
from msmine.server.records import (
    BatchRecord,
    ModelRecord,
    PairFilters,
    PairPage,
    PairRecord,
    PairSummary,
    StoreStats,
    TokenRecord,
    encode_cursor,
)

__all__ = ["DuplicateError", "MetadataStore", "NotFoundError", "SqlMetadataStore", "SqliteMetadataStore",
           "StoreError"]

# The schema is the versioned migrations of msmine.server.migrations (shared with the PostgreSQL store).

_SUMMARY_COLUMNS = ("upload_id, device_id, captured_at, received_at, score, model_version, task, width, height, "
                    "labelled, selection_policy, selection_score")
_PAIR_COLUMNS = _SUMMARY_COLUMNS + ", files, phash_visible, phash_thermal, manifest, masks"
_INSERT_COLUMNS = _PAIR_COLUMNS + ", rank_score"
INSERT_COLUMNS = _INSERT_COLUMNS  # for a subclass's own insert (metadata_pg)


class MetadataStore(Protocol):
    """What the server needs from a metadata database."""

    def add_token(self, name: str, role: str, device_id: str | None, token_hash: str) -> TokenRecord: ...
    def find_token(self, token_hash: str) -> TokenRecord | None: ...
    def list_tokens(self) -> list[TokenRecord]: ...
    def revoke_token(self, token_id: int) -> bool: ...
    def insert_pair(self, record: PairRecord) -> bool:
        """Store a pair; False (nothing written) when its upload id is already stored."""
    def get_pair(self, upload_id: str) -> PairRecord | None: ...
    def list_pairs(self, filters: PairFilters, limit: int, offset: int = 0,
                   after: tuple[float, str] | None = None) -> PairPage:
        """One page by descending rank score (ties by upload id): at ``offset``, or right after the
        cursor ``after`` (keyset paging, as fast deep in the listing as at its start)."""
    def iter_ranked(self, filters: PairFilters, chunk: int = 2000) -> Iterator[tuple[str, int, int]]:
        """(upload_id, phash_visible, phash_thermal) by descending rank score, all matching pairs."""
    def set_labels(self, labels: dict[tuple[str, str], list], source: str,
                   masks: dict[tuple[str, str], str] | None = None) -> int:
        """Store boxes (and class-id mask PNG hashes) per (upload_id, modality); NotFoundError when a
        pair does not exist."""
    def get_labels(self, upload_id: str) -> dict[str, list]: ...
    def get_label_masks(self, upload_id: str) -> dict[str, str]:
        """modality -> sha256 of the imported class-id mask PNG (only modalities that have one)."""
    def pair_masks(self, upload_id: str) -> dict[str, str]:
        """branch -> sha256 of the device's predicted class-id mask PNG ({} for none or no pair)."""
    def add_model(self, record: ModelRecord) -> ModelRecord:
        """Publish a model version; DuplicateError when the version exists."""
    def get_model(self, version: str) -> ModelRecord | None: ...
    def latest_model(self) -> ModelRecord | None: ...
    def list_models(self) -> list[ModelRecord]: ...
    def create_batch(self, batch_id: str, k: int, filters: PairFilters, hamming: int, ids: list[str]) -> BatchRecord:
        """Record a labelling batch; DuplicateError for a batch id in use, NotFoundError for an unknown pair."""
    def get_batch(self, batch_id: str) -> BatchRecord | None: ...
    def referenced_blobs(self) -> set[str]: ...
    def stats(self) -> StoreStats: ...
    def ping(self) -> None:
        """A cheap round trip to the database (readiness); StoreError when it does not answer."""
    def close(self) -> None: ...


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= (1 << 63) else value


def _summary_fields(row: sqlite3.Row) -> dict:
    return dict(
        upload_id=row["upload_id"], device_id=row["device_id"], captured_at=row["captured_at"],
        received_at=row["received_at"], score=row["score"], model_version=row["model_version"], task=row["task"],
        width=row["width"], height=row["height"], labelled=bool(row["labelled"]),
        selection_policy=row["selection_policy"], selection_score=row["selection_score"],
    )


def _summary_from_row(row: sqlite3.Row) -> PairSummary:
    return PairSummary(**_summary_fields(row))


def _pair_from_row(row: sqlite3.Row) -> PairRecord:
    return PairRecord(**_summary_fields(row), files=json.loads(row["files"]), phash_visible=row["phash_visible"],
                      phash_thermal=row["phash_thermal"], manifest_json=row["manifest"],
                      masks=json.loads(row["masks"] or "{}"))


def _model_from_row(row: sqlite3.Row) -> ModelRecord:
    return ModelRecord(version=row["version"], sha256=row["sha256"], bytes=row["bytes"],
                       metadata=json.loads(row["metadata"]), published_at=row["published_at"])


def _token_from_row(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(id=row["id"], name=row["name"], role=row["role"], device_id=row["device_id"],
                       created_at=row["created_at"], revoked_at=row["revoked_at"])


# PairFilters field -> SQL condition; a None field is not filtered on.
_FILTER_SQL = (
    ("device", "device_id = ?"),
    ("since", "captured_at >= ?"),
    ("until", "captured_at < ?"),
    ("min_score", "rank_score >= ?"),
    ("max_score", "rank_score <= ?"),
    ("model_version", "model_version = ?"),
    ("labelled", "labelled = ?"),
    ("task", "task = ?"),
)


def _where(filters: PairFilters) -> tuple[str, list]:
    clauses, params = [], []
    for field_name, clause in _FILTER_SQL:
        value = getattr(filters, field_name)
        if value is not None:
            clauses.append(clause)
            params.append(int(value) if isinstance(value, bool) else value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


_COUNT_COLUMNS = {"device": "device_id", "model_version": "model_version", "labelled": "labelled"}


def _total_query(filters: PairFilters, where: str, params: list) -> tuple[str, list]:
    """How to count the pairs a listing matches: from ``pair_counts`` (kept by triggers, a few rows)
    when only device / model version / label status are filtered, else a COUNT over ``pairs``."""
    used = [name for name, _ in _FILTER_SQL if getattr(filters, name) is not None]
    if all(name in migrations.COUNTED_FILTERS for name in used):
        clauses = [f"{_COUNT_COLUMNS[name]} = ?" for name in used]
        values = [int(v) if isinstance(v, bool) else v for v in (getattr(filters, n) for n in used)]
        return ("SELECT COALESCE(SUM(n), 0) FROM pair_counts"
                + (" WHERE " + " AND ".join(clauses) if clauses else ""), values)
    return f"SELECT COUNT(*) FROM pairs{where}", list(params)


def _after_clause(where: str, after: tuple[float, str] | None) -> tuple[str, list]:
    """Keyset paging in rank order (descending rank score, then ascending upload id)."""
    if after is None:
        return "", []
    return ((" AND " if where else " WHERE ") + "rank_score <= ? AND (rank_score < ? OR upload_id > ?)",
            [after[0], after[0], after[1]])


def _page(rows, limit: int, total: int) -> PairPage:
    """A page from ``limit + 1`` fetched rows (the extra one says whether a next page exists)."""
    items = [_summary_from_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    cursor = encode_cursor(rows[limit - 1]["rank_score"], rows[limit - 1]["upload_id"]) if more else None
    return PairPage(items=items, total=int(total), next_after=cursor)


def pair_values(record: PairRecord) -> tuple:
    """A pair's row, in the order of ``INSERT_COLUMNS``."""
    return (record.upload_id, record.device_id, record.captured_at, record.received_at, record.score,
            record.model_version, record.task, record.width, record.height, int(record.labelled),
            record.selection_policy, record.selection_score, json.dumps(record.files),
            _signed64(record.phash_visible), _signed64(record.phash_thermal), record.manifest_json,
            json.dumps(record.masks, sort_keys=True), record.rank_score)


def pair_blob_shas(record: PairRecord) -> list[str]:
    """The blobs a pair references (its files and masks), each once."""
    return sorted({info["sha256"] for info in record.files.values()} | set(record.masks.values()))


def _in(values: list) -> str:
    return ", ".join("?" * len(values))


class SqlMetadataStore:
    """The queries of the seam, written once in SQL that SQLite and PostgreSQL both run (``?``
    placeholders; a subclass's connections translate them). A subclass supplies ``_tx()`` (one write
    transaction), ``_reading()`` (a connection to read on), ``_migrate()`` and ``close()``; rows must
    answer both ``row[i]`` and ``row["column"]``."""

    # True when a call waits on the network (a database server): code on the event loop must run
    # such calls in a worker thread, or every request of the replica waits for each round trip.
    # False for SQLite: an indexed read of a local file costs less than the hop to a thread.
    waits_on_network = False

    def _tx(self):
        raise NotImplementedError

    def _reading(self):
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def schema_version(self) -> int:
        with self._reading() as conn:
            return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]

    def ping(self) -> None:
        with self._reading() as conn:
            conn.execute("SELECT 1").fetchone()

    @staticmethod
    def _require_pairs(conn, ids) -> None:
        """NotFoundError unless every upload id in ``ids`` is stored."""
        wanted = sorted(set(ids))
        known = {r[0] for r in conn.execute(
            f"SELECT upload_id FROM pairs WHERE upload_id IN ({_in(wanted)})", wanted)} if wanted else set()
        missing = [uid for uid in ids if uid not in known]
        if missing:
            raise NotFoundError(f"no pair with upload id {missing[0]} ({len(missing)} unknown)")

    # tokens -----------------------------------------------------------------------------------
    def add_token(self, name: str, role: str, device_id: str | None, token_hash: str) -> TokenRecord:
        now = time.time()
        with self._tx() as conn:
            rows = conn.execute(
                "INSERT INTO tokens (name, role, device_id, token_hash, created_at) VALUES (?, ?, ?, ?, ?) "
                "RETURNING id",
                (name, role, device_id, token_hash, now),
            ).fetchall()
        return TokenRecord(id=rows[0][0], name=name, role=role, device_id=device_id, created_at=now)

    def find_token(self, token_hash: str) -> TokenRecord | None:
        with self._reading() as conn:
            row = conn.execute(
                "SELECT * FROM tokens WHERE token_hash = ? AND revoked_at IS NULL", (token_hash,)
            ).fetchone()
        return _token_from_row(row) if row else None

    def list_tokens(self) -> list[TokenRecord]:
        with self._reading() as conn:
            return [_token_from_row(r) for r in conn.execute("SELECT * FROM tokens ORDER BY id").fetchall()]

    def revoke_token(self, token_id: int) -> bool:
        with self._tx() as conn:
            cur = conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                               (time.time(), token_id))
            return cur.rowcount == 1

    # pairs ------------------------------------------------------------------------------------
    def insert_pair(self, record: PairRecord) -> bool:
        """Insert a pair; False (and nothing written) when its upload id is already stored."""
        values = pair_values(record)
        with self._tx() as conn:
            cur = conn.execute(
                f"INSERT INTO pairs ({_INSERT_COLUMNS}) VALUES ({_in(values)}) ON CONFLICT (upload_id) DO NOTHING",
                values,
            )
            if cur.rowcount == 0:
                return False
            conn.executemany(
                "INSERT INTO pair_blobs (sha256, upload_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [(sha, record.upload_id) for sha in pair_blob_shas(record)],
            )
        return True

    def get_pair(self, upload_id: str) -> PairRecord | None:
        with self._reading() as conn:
            row = conn.execute(f"SELECT {_PAIR_COLUMNS} FROM pairs WHERE upload_id = ?", (upload_id,)).fetchone()
        return _pair_from_row(row) if row else None

    def list_pairs(self, filters: PairFilters, limit: int, offset: int = 0,
                   after: tuple[float, str] | None = None) -> PairPage:
        where, params = _where(filters)
        extra, extra_params = _after_clause(where, after)
        total_sql, total_params = _total_query(filters, where, params)
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_SUMMARY_COLUMNS}, rank_score FROM pairs{where}{extra} "
                "ORDER BY rank_score DESC, upload_id LIMIT ? OFFSET ?",
                (*params, *extra_params, limit + 1, offset),
            ).fetchall()
            total = conn.execute(total_sql, total_params).fetchone()[0]
        return _page(rows, limit, total)

    def iter_ranked(self, filters: PairFilters, chunk: int = 2000) -> Iterator[tuple[str, int, int]]:
        """(upload_id, phash_visible, phash_thermal) by descending score, in chunks (keyset paging)."""
        where, params = _where(filters)
        last: tuple[float, str] | None = None
        while True:
            extra, extra_params = _after_clause(where, last)
            with self._reading() as conn:
                rows = conn.execute(
                    f"SELECT upload_id, rank_score, phash_visible, phash_thermal FROM pairs{where}{extra} "
                    "ORDER BY rank_score DESC, upload_id LIMIT ?",
                    (*params, *extra_params, chunk),
                ).fetchall()
            if not rows:
                return
            for r in rows:
                yield r["upload_id"], r["phash_visible"], r["phash_thermal"]
            last = (rows[-1]["rank_score"], rows[-1]["upload_id"])

    def pair_masks(self, upload_id: str) -> dict[str, str]:
        """branch -> sha256 of the device's class-id mask PNG in the blob store ({} when none)."""
        with self._reading() as conn:
            row = conn.execute("SELECT masks FROM pairs WHERE upload_id = ?", (upload_id,)).fetchone()
        return json.loads(row["masks"] or "{}") if row else {}

    # labels -----------------------------------------------------------------------------------
    def set_labels(self, labels: dict[tuple[str, str], list], source: str,
                   masks: dict[tuple[str, str], str] | None = None) -> int:
        """Store boxes per (upload_id, modality), replacing earlier ones; mark the pairs labelled.

        ``masks`` maps (upload_id, modality) to the sha256 of a class-id mask PNG the caller has
        already put in the blob store (:mod:`msmine.masks`); a key in ``masks`` but not in ``labels``
        sets the mask and keeps that label's boxes (``[]`` for a new label). Returns how many label
        sets were written."""
        masks = dict(masks or {})
        now = time.time()
        ids = sorted({uid for uid, _ in labels} | {uid for uid, _ in masks})
        with self._tx() as conn:
            self._require_pairs(conn, ids)
            conn.executemany(
                "INSERT INTO labels (upload_id, modality, boxes, source, imported_at, mask) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (upload_id, modality) DO UPDATE SET boxes = excluded.boxes, "
                "source = excluded.source, imported_at = excluded.imported_at, "
                "mask = COALESCE(excluded.mask, labels.mask)",
                [(uid, mod, json.dumps(boxes), source, now, masks.get((uid, mod)))
                 for (uid, mod), boxes in labels.items()],
            )
            conn.executemany(
                "INSERT INTO labels (upload_id, modality, boxes, source, imported_at, mask) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (upload_id, modality) DO UPDATE SET mask = excluded.mask, "
                "source = excluded.source, imported_at = excluded.imported_at",
                [(uid, mod, "[]", source, now, sha) for (uid, mod), sha in masks.items() if (uid, mod) not in labels],
            )
            conn.executemany("UPDATE pairs SET labelled = 1 WHERE upload_id = ?", [(uid,) for uid in ids])
        return len(set(labels) | set(masks))

    def get_label_masks(self, upload_id: str) -> dict[str, str]:
        """modality -> sha256 of the imported class-id mask PNG (only the modalities that have one)."""
        with self._reading() as conn:
            rows = conn.execute("SELECT modality, mask FROM labels WHERE upload_id = ? AND mask IS NOT NULL",
                                (upload_id,)).fetchall()
        return {r["modality"]: r["mask"] for r in rows}

    def get_labels(self, upload_id: str) -> dict[str, list]:
        with self._reading() as conn:
            rows = conn.execute("SELECT modality, boxes FROM labels WHERE upload_id = ?", (upload_id,)).fetchall()
        return {r["modality"]: json.loads(r["boxes"]) for r in rows}

    # models -----------------------------------------------------------------------------------
    def add_model(self, record: ModelRecord) -> ModelRecord:
        """Insert a model version; raises DuplicateError when the version exists."""
        record.published_at = record.published_at or time.time()
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO models (version, sha256, bytes, metadata, published_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (version) DO NOTHING",
                (record.version, record.sha256, record.bytes, json.dumps(record.metadata), record.published_at),
            )
            if cur.rowcount == 0:
                raise DuplicateError(f"model version {record.version!r} is already published")
        return record

    def _models(self, where: str = "", params: tuple = (), limit: str = "") -> list[ModelRecord]:
        with self._reading() as conn:
            rows = conn.execute(f"SELECT * FROM models{where} ORDER BY seq DESC{limit}", params).fetchall()
        return [_model_from_row(r) for r in rows]

    def get_model(self, version: str) -> ModelRecord | None:
        found = self._models(" WHERE version = ?", (version,))
        return found[0] if found else None

    def latest_model(self) -> ModelRecord | None:
        found = self._models(limit=" LIMIT 1")
        return found[0] if found else None

    def list_models(self) -> list[ModelRecord]:
        return self._models()

    # batches ----------------------------------------------------------------------------------
    def create_batch(self, batch_id: str, k: int, filters: PairFilters, hamming: int, ids: list[str]) -> BatchRecord:
        record = BatchRecord(batch_id=batch_id, created_at=time.time(), k=k, filters=dict(filters.__dict__),
                             hamming=hamming, upload_ids=list(ids))
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO batches (batch_id, created_at, k, filters, hamming) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (batch_id) DO NOTHING",
                (batch_id, record.created_at, k, json.dumps(record.filters), hamming))
            if cur.rowcount == 0:
                raise DuplicateError(f"batch id {batch_id} is in use")
            self._require_pairs(conn, ids)
            conn.executemany("INSERT INTO batch_items (batch_id, rank, upload_id) VALUES (?, ?, ?)",
                             [(batch_id, i, uid) for i, uid in enumerate(ids)])
        return record

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        with self._reading() as conn:
            row = conn.execute("SELECT * FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
            if row is None:
                return None
            ids = [r[0] for r in conn.execute(
                "SELECT upload_id FROM batch_items WHERE batch_id = ? ORDER BY rank", (batch_id,)).fetchall()]
        return BatchRecord(batch_id=batch_id, created_at=row["created_at"], k=row["k"],
                           filters=json.loads(row["filters"]), hamming=row["hamming"], upload_ids=ids)

    # housekeeping -----------------------------------------------------------------------------
    def referenced_blobs(self) -> set[str]:
        with self._reading() as conn:
            refs = {r[0] for r in conn.execute("SELECT DISTINCT sha256 FROM pair_blobs").fetchall()}
            refs |= {r[0] for r in conn.execute("SELECT sha256 FROM models").fetchall()}
            refs |= {r[0] for r in conn.execute("SELECT DISTINCT mask FROM labels WHERE mask IS NOT NULL").fetchall()}
        return refs

    def stats(self) -> StoreStats:
        with self._reading() as conn:
            devices = [r[0] for r in conn.execute("SELECT DISTINCT device_id FROM pairs ORDER BY device_id").fetchall()]
            versions = [r[0] for r in conn.execute(
                "SELECT DISTINCT model_version FROM pairs ORDER BY model_version").fetchall()]
            total, labelled = conn.execute("SELECT COUNT(*), COALESCE(SUM(labelled), 0) FROM pairs").fetchone()
            by_version = conn.execute("SELECT model_version, MIN(task), MAX(received_at) AS last_received FROM pairs "
                                      "GROUP BY model_version ORDER BY last_received DESC, model_version").fetchall()
        return StoreStats(pairs=int(total), labelled=int(labelled), devices=devices, model_versions=versions,
                          model_tasks={r[0]: r[1] for r in by_version},
                          latest_model_version=by_version[0][0] if by_version else None)


class SqliteMetadataStore(SqlMetadataStore):
    """SQLite in WAL mode; one connection per thread (the server runs handlers in a thread pool)."""

    FILENAME = "msmine.sqlite3"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self._migrate()
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"cannot open the metadata database {self.path}: {exc}") from None

    def _migrate(self) -> None:
        """Bring the database to the current schema in place: every migration of
        :mod:`msmine.server.migrations` not yet recorded, in one transaction (BEGIN IMMEDIATE, so two
        processes opening one file at once migrate once). A root made before versioned migrations is
        recognised by its tables and upgraded from there."""
        with self._tx() as conn:
            conn.execute(migrations.SCHEMA_TABLE["sqlite"])
            applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            migrations.check_known(applied)
            baseline = 0
            if not applied:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if "pairs" in tables:
                    columns = {r["name"] for r in conn.execute("PRAGMA table_info(pairs)")}
                    baseline = 2 if "rank_score" in columns else 1
            now = time.time()
            for migration in migrations.MIGRATIONS:
                if migration.version in applied:
                    continue
                if migration.version > baseline:
                    for statement in migration.statements("sqlite"):
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                             (migration.version, migration.description, now))

    def _read(self) -> sqlite3.Connection:
        """This thread's connection (reads run outside explicit transactions)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _reading(self):
        return contextlib.nullcontext(self._read())

    def _tx(self) -> _Tx:
        """``with self._tx() as conn``: one write transaction on this thread's connection."""
        return _Tx(self._read())

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    def ping(self) -> None:
        try:
            super().ping()
        except sqlite3.Error as exc:
            raise StoreError(f"metadata database: {exc}") from None


class _Tx:
    """``with store._tx() as conn``: BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as err:
                self.conn.execute("ROLLBACK")
                raise StoreError(f"metadata database: {err}") from None
            return
        self.conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.IntegrityError):  # a constraint the store's own checks did not foresee
            raise StoreError(f"metadata database refused a write: {exc}") from None
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"metadata database: {exc}") from None
