"""PostgreSQL metadata store: the same seam as :class:`~msmine.server.metadata.SqliteMetadataStore`
(same records, same exceptions, same ranking), for servers that run as several replicas on one
database.

* psycopg 3 with a connection pool (``psycopg_pool``); imported only when this store is opened
  (extra ``postgres``), so a plain server install never needs it;
* uniqueness is the database's: a duplicate upload arriving at two replicas at once is one
  ``INSERT ... ON CONFLICT DO NOTHING`` that wins and one that inserts nothing;
* schema changes are the versioned migrations of :mod:`msmine.server.migrations`, applied at open
  under an advisory lock, so replicas starting together migrate once;
* :meth:`run_once` is an advisory lock for jobs that must not run on two replicas at the same
  time (the blob sweep at start-up);
* :meth:`rate_hit` counts uploads per device in the database, so a rate limit holds across
  replicas.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import zlib
from collections.abc import Iterator

from msmine.errors import UserError
from msmine.server import migrations
from msmine.server.errors import DuplicateError, NotFoundError, StoreError
from msmine.server.metadata import (
    _FILTER_SQL,
    _INSERT_COLUMNS,
    _PAIR_COLUMNS,
    _SUMMARY_COLUMNS,
    _after_clause,
    _model_from_row,
    _page,
    _pair_from_row,
    _signed64,
    _token_from_row,
    _total_query,
)
from msmine.server.records import (
    BatchRecord,
    ModelRecord,
    PairFilters,
    PairPage,
    PairRecord,
    StoreStats,
    TokenRecord,
)

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 0x6D736D696E65  # "msmine": the advisory lock key for schema migrations


def _where(filters: PairFilters) -> tuple[str, list]:
    clauses, params = [], []
    for field_name, clause in _FILTER_SQL:
        value = getattr(filters, field_name)
        if value is not None:
            clauses.append(clause.replace("?", "%s"))
            params.append(int(value) if isinstance(value, bool) else value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _lock_key(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def redact(dsn: str) -> str:
    """A DSN without its password, for messages and logs."""
    if "://" in dsn and "@" in dsn:
        scheme, rest = dsn.split("://", 1)
        userinfo, host = rest.rsplit("@", 1)
        return f"{scheme}://{userinfo.split(':', 1)[0]}@{host}"
    return dsn


class PostgresMetadataStore:
    """Metadata in PostgreSQL (``postgresql://USER[:PASSWORD]@HOST:PORT/DB``)."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 30.0) -> None:
        try:
            import psycopg
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise UserError("a PostgreSQL metadata store needs psycopg 3: pip install 'msmine[postgres]'") from None
        self._psycopg = psycopg
        self.dsn = dsn
        try:  # one plain connection first: a wrong address or password fails fast, in one line
            psycopg.connect(dsn, connect_timeout=max(1, int(min(timeout, 10)))).close()
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split())
            raise StoreError(f"cannot connect to PostgreSQL at {redact(dsn)}: {reason}") from None
        try:
            self._pool = ConnectionPool(dsn, min_size=min_size, max_size=max_size, timeout=timeout,
                                        kwargs={"row_factory": dict_row, "autocommit": False}, open=False)
            self._pool.open(wait=True, timeout=timeout)
        except Exception as exc:  # psycopg_pool.PoolTimeout, psycopg.OperationalError
            raise StoreError(f"cannot connect to PostgreSQL at {redact(dsn)}: {exc}") from None
        try:
            self._migrate()
        except Exception:
            self.close()
            raise

    # -- plumbing --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self):
        """One transaction on a pooled connection; database errors become StoreError."""
        psycopg = self._psycopg
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        except (DuplicateError, NotFoundError):
            raise
        except psycopg.errors.UniqueViolation as exc:
            raise StoreError(f"metadata database refused a write: {exc}") from None
        except psycopg.Error as exc:
            raise StoreError(f"metadata database: {exc}") from None
        except Exception as exc:
            if type(exc).__name__ == "PoolTimeout":
                raise StoreError(f"metadata database: no connection available ({exc})") from None
            raise

    def _migrate(self) -> None:
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(migrations.SCHEMA_TABLE["postgres"])
            applied = {r["version"] for r in conn.execute("SELECT version FROM schema_migrations")}
            migrations.check_known(applied)
            for migration in migrations.pending(applied):
                for statement in migration.statements("postgres"):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (version, description, applied_at) VALUES (%s, %s, %s)",
                             (migration.version, migration.description, time.time()))
                log.info("metadata schema: applied migration %d (%s)", migration.version, migration.description)

    def schema_version(self) -> int:
        with self._tx() as conn:
            return conn.execute("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations").fetchone()["v"]

    def close(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()

    @contextlib.contextmanager
    def run_once(self, name: str, wait: bool = False):
        """``with store.run_once("sweep") as mine:`` -- ``mine`` is True on the one replica that holds
        the advisory lock ``name`` (others get False at once, or wait with ``wait=True``)."""
        with self._pool.connection() as conn:
            conn.autocommit = True
            key = _lock_key(name)
            if wait:
                conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                got = True
            else:
                got = conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (key,)).fetchone()["got"]
            try:
                yield bool(got)
            finally:
                if got:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                conn.autocommit = False

    def rate_hit(self, device_id: str, limit_per_min: int, now: float | None = None) -> bool:
        """Count one upload of ``device_id`` in the current minute; False when over ``limit_per_min``
        (counted across every replica on this database)."""
        now = time.time() if now is None else now
        window = int(now // 60)
        with self._tx() as conn:
            hits = conn.execute(
                "INSERT INTO rate_windows (device_id, window_start, hits) VALUES (%s, %s, 1) "
                "ON CONFLICT (device_id, window_start) DO UPDATE SET hits = rate_windows.hits + 1 RETURNING hits",
                (device_id, window),
            ).fetchone()["hits"]
            if hits == 1:  # first hit of a new window: forget old windows of this device
                conn.execute("DELETE FROM rate_windows WHERE device_id = %s AND window_start < %s", (device_id, window))
        return hits <= limit_per_min

    # -- tokens ----------------------------------------------------------------------------------
    def add_token(self, name: str, role: str, device_id: str | None, token_hash: str) -> TokenRecord:
        now = time.time()
        with self._tx() as conn:
            row = conn.execute(
                "INSERT INTO tokens (name, role, device_id, token_hash, created_at) VALUES (%s, %s, %s, %s, %s) "
                "RETURNING id",
                (name, role, device_id, token_hash, now),
            ).fetchone()
        return TokenRecord(id=row["id"], name=name, role=role, device_id=device_id, created_at=now)

    def find_token(self, token_hash: str) -> TokenRecord | None:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM tokens WHERE token_hash = %s AND revoked_at IS NULL",
                               (token_hash,)).fetchone()
        return _token_from_row(row) if row else None

    def list_tokens(self) -> list[TokenRecord]:
        with self._tx() as conn:
            return [_token_from_row(r) for r in conn.execute("SELECT * FROM tokens ORDER BY id")]

    def revoke_token(self, token_id: int) -> bool:
        with self._tx() as conn:
            cur = conn.execute("UPDATE tokens SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                               (time.time(), token_id))
            return cur.rowcount == 1

    # -- pairs -----------------------------------------------------------------------------------
    def insert_pair(self, record: PairRecord) -> bool:
        values = (record.upload_id, record.device_id, record.captured_at, record.received_at, record.score,
                  record.model_version, record.task, record.width, record.height, int(record.labelled),
                  record.selection_policy, record.selection_score, json.dumps(record.files),
                  _signed64(record.phash_visible), _signed64(record.phash_thermal), record.manifest_json,
                  record.rank_score)
        with self._tx() as conn:
            cur = conn.execute(
                f"INSERT INTO pairs ({_INSERT_COLUMNS}) VALUES ({', '.join(['%s'] * len(values))}) "
                "ON CONFLICT (upload_id) DO NOTHING",
                values,
            )
            if cur.rowcount == 0:
                return False
            with conn.cursor() as c:
                c.executemany(
                    "INSERT INTO pair_blobs (sha256, upload_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    [(info["sha256"], record.upload_id) for info in record.files.values()],
                )
        return True

    def get_pair(self, upload_id: str) -> PairRecord | None:
        with self._tx() as conn:
            row = conn.execute(f"SELECT {_PAIR_COLUMNS} FROM pairs WHERE upload_id = %s", (upload_id,)).fetchone()
        return _pair_from_row(row) if row else None

    def list_pairs(self, filters: PairFilters, limit: int, offset: int = 0,
                   after: tuple[float, str] | None = None) -> PairPage:
        where, params = _where(filters)
        extra, extra_params = _after_clause(where, after)
        extra = extra.replace("?", "%s")
        total_sql, total_params = _total_query(filters, where, params)
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT {_SUMMARY_COLUMNS}, rank_score FROM pairs{where}{extra} "
                "ORDER BY rank_score DESC, upload_id LIMIT %s OFFSET %s",
                (*params, *extra_params, limit + 1, offset),
            ).fetchall()
            total = conn.execute(total_sql.replace("?", "%s"), total_params).fetchone()
        return _page(rows, limit, next(iter(total.values())))

    def iter_ranked(self, filters: PairFilters, chunk: int = 2000) -> Iterator[tuple[str, int, int]]:
        where, params = _where(filters)
        last: tuple[float, str] | None = None
        while True:
            extra, extra_params = "", []
            if last is not None:
                # keyset paging, descending rank then ascending id: rows after `last`
                extra = (" AND " if where else " WHERE ") + \
                    "rank_score <= %s AND (rank_score < %s OR upload_id > %s)"
                extra_params = [last[0], last[0], last[1]]
            with self._tx() as conn:
                rows = conn.execute(
                    f"SELECT upload_id, rank_score, phash_visible, phash_thermal FROM pairs{where}{extra} "
                    "ORDER BY rank_score DESC, upload_id LIMIT %s",
                    (*params, *extra_params, chunk),
                ).fetchall()
            if not rows:
                return
            for r in rows:
                yield r["upload_id"], r["phash_visible"], r["phash_thermal"]
            last = (rows[-1]["rank_score"], rows[-1]["upload_id"])

    # -- labels ----------------------------------------------------------------------------------
    def set_labels(self, labels: dict[tuple[str, str], list], source: str) -> int:
        now = time.time()
        ids = sorted({uid for uid, _ in labels})
        with self._tx() as conn:
            known = {r["upload_id"] for r in conn.execute(
                "SELECT upload_id FROM pairs WHERE upload_id = ANY(%s)", (ids,))} if ids else set()
            missing = [uid for uid in ids if uid not in known]
            if missing:
                raise NotFoundError(f"no pair with upload id {missing[0]} ({len(missing)} unknown)")
            with conn.cursor() as c:
                c.executemany(
                    "INSERT INTO labels (upload_id, modality, boxes, source, imported_at) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (upload_id, modality) DO UPDATE SET boxes = EXCLUDED.boxes, "
                    "source = EXCLUDED.source, imported_at = EXCLUDED.imported_at",
                    [(uid, mod, json.dumps(boxes), source, now) for (uid, mod), boxes in labels.items()],
                )
            conn.execute("UPDATE pairs SET labelled = 1 WHERE upload_id = ANY(%s)", (ids,))
        return len(labels)

    def get_labels(self, upload_id: str) -> dict[str, list]:
        with self._tx() as conn:
            rows = conn.execute("SELECT modality, boxes FROM labels WHERE upload_id = %s", (upload_id,)).fetchall()
        return {r["modality"]: json.loads(r["boxes"]) for r in rows}

    # -- models ----------------------------------------------------------------------------------
    def add_model(self, record: ModelRecord) -> ModelRecord:
        record.published_at = record.published_at or time.time()
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO models (version, sha256, bytes, metadata, published_at) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (version) DO NOTHING",
                (record.version, record.sha256, record.bytes, json.dumps(record.metadata), record.published_at),
            )
            if cur.rowcount == 0:
                raise DuplicateError(f"model version {record.version!r} is already published")
        return record

    def get_model(self, version: str) -> ModelRecord | None:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM models WHERE version = %s", (version,)).fetchone()
        return _model_from_row(row) if row else None

    def latest_model(self) -> ModelRecord | None:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM models ORDER BY seq DESC LIMIT 1").fetchone()
        return _model_from_row(row) if row else None

    def list_models(self) -> list[ModelRecord]:
        with self._tx() as conn:
            return [_model_from_row(r) for r in conn.execute("SELECT * FROM models ORDER BY seq DESC")]

    # -- batches ---------------------------------------------------------------------------------
    def create_batch(self, batch_id: str, k: int, filters: PairFilters, hamming: int, ids: list[str]) -> BatchRecord:
        record = BatchRecord(batch_id=batch_id, created_at=time.time(), k=k, filters=dict(filters.__dict__),
                             hamming=hamming, upload_ids=list(ids))
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO batches (batch_id, created_at, k, filters, hamming) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (batch_id) DO NOTHING",
                (batch_id, record.created_at, k, json.dumps(record.filters), hamming))
            if cur.rowcount == 0:
                raise DuplicateError(f"batch id {batch_id} is in use")
            if ids:
                known = {r["upload_id"] for r in conn.execute(
                    "SELECT upload_id FROM pairs WHERE upload_id = ANY(%s)", (list(ids),))}
                missing = [uid for uid in ids if uid not in known]
                if missing:
                    raise NotFoundError(f"no pair with upload id {missing[0]} ({len(missing)} unknown)")
                with conn.cursor() as c:
                    c.executemany("INSERT INTO batch_items (batch_id, rank, upload_id) VALUES (%s, %s, %s)",
                                  [(batch_id, i, uid) for i, uid in enumerate(ids)])
        return record

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM batches WHERE batch_id = %s", (batch_id,)).fetchone()
            if row is None:
                return None
            ids = [r["upload_id"] for r in conn.execute(
                "SELECT upload_id FROM batch_items WHERE batch_id = %s ORDER BY rank", (batch_id,))]
        return BatchRecord(batch_id=batch_id, created_at=row["created_at"], k=row["k"],
                           filters=json.loads(row["filters"]), hamming=row["hamming"], upload_ids=ids)

    # -- housekeeping ----------------------------------------------------------------------------
    def referenced_blobs(self) -> set[str]:
        with self._tx() as conn:
            refs = {r["sha256"] for r in conn.execute("SELECT DISTINCT sha256 FROM pair_blobs")}
            refs |= {r["sha256"] for r in conn.execute("SELECT sha256 FROM models")}
        return refs

    def ping(self) -> None:
        with self._tx() as conn:
            conn.execute("SELECT 1")

    def stats(self) -> StoreStats:
        with self._tx() as conn:
            devices = [r["device_id"] for r in conn.execute("SELECT DISTINCT device_id FROM pairs ORDER BY device_id")]
            versions = [r["model_version"] for r in conn.execute(
                "SELECT DISTINCT model_version FROM pairs ORDER BY model_version")]
            row = conn.execute("SELECT COUNT(*) AS n, COALESCE(SUM(labelled), 0) AS l FROM pairs").fetchone()
        return StoreStats(pairs=row["n"], labelled=int(row["l"]), devices=devices, model_versions=versions)
