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
import logging
import time
import zlib

from msmine.errors import UserError
from msmine.server import migrations
from msmine.server.errors import DuplicateError, NotFoundError, StoreError
from msmine.server.metadata import INSERT_COLUMNS, SqlMetadataStore, pair_blob_shas, pair_values
from msmine.server.records import PairRecord

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 0x6D736D696E65  # "msmine": the advisory lock key for schema migrations


class _Row(tuple):
    """A row that answers ``row[i]`` and ``row["column"]``, as sqlite3.Row does (the shared queries use both)."""

    def __new__(cls, values, index: dict[str, int]):
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key):
        return tuple.__getitem__(self, self._index[key] if isinstance(key, str) else key)


def _row_factory(cursor):
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: _Row(values, index)


class _Connection:
    """A pooled psycopg connection speaking the shared queries' dialect: ``?`` placeholders, and
    ``executemany`` on the connection (as sqlite3 has it)."""

    def __init__(self, conn) -> None:
        self.raw = conn

    def execute(self, sql: str, params=()):
        return self.raw.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, rows) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), list(rows))


def _back_to_autocommit(conn) -> None:
    """Pool reset: a connection a caller switched out of autocommit comes back in it (the store's
    one-statement writes would otherwise sit in a transaction that is rolled back)."""
    if not conn.autocommit:
        conn.autocommit = True


def _lock_key(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def redact(dsn: str) -> str:
    """A DSN without its password, for messages and logs."""
    if "://" in dsn and "@" in dsn:
        scheme, rest = dsn.split("://", 1)
        userinfo, host = rest.rsplit("@", 1)
        return f"{scheme}://{userinfo.split(':', 1)[0]}@{host}"
    return dsn


class PostgresMetadataStore(SqlMetadataStore):
    """Metadata in PostgreSQL (``postgresql://USER[:PASSWORD]@HOST:PORT/DB``).

    Pooled connections are in autocommit mode: a read is one statement and one round trip (each
    statement sees its own snapshot, as SQLite's reads outside a transaction do); a write that needs
    several statements runs in ``_tx`` (BEGIN ... COMMIT); an upload's insert is one statement.
    """

    waits_on_network = True

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 30.0) -> None:
        try:
            import psycopg
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
                                        kwargs={"row_factory": _row_factory, "autocommit": True},
                                        reset=_back_to_autocommit, open=False)
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
        with self._errors(), self._pool.connection() as conn, conn.transaction():
            yield _Connection(conn)

    @contextlib.contextmanager
    def _statements(self):
        """A pooled connection outside a transaction: each statement is one round trip and commits
        on its own."""
        with self._errors(), self._pool.connection() as conn:
            yield _Connection(conn)

    def _reading(self):
        return self._statements()

    @contextlib.contextmanager
    def _errors(self):
        """Database errors become StoreError (the store's own exceptions pass through)."""
        psycopg = self._psycopg
        try:
            yield
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
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            conn.execute(migrations.SCHEMA_TABLE["postgres"])
            applied = {r["version"] for r in conn.execute("SELECT version FROM schema_migrations")}
            migrations.check_known(applied)
            for migration in migrations.pending(applied):
                for statement in migration.statements("postgres"):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                             (migration.version, migration.description, time.time()))
                log.info("metadata schema: applied migration %d (%s)", migration.version, migration.description)

    def close(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()

    @contextlib.contextmanager
    def run_once(self, name: str, wait: bool = False):
        """``with store.run_once("sweep") as mine:`` -- ``mine`` is True on the one replica that holds
        the advisory lock ``name`` (others get False at once, or wait with ``wait=True``)."""
        with self._pool.connection() as conn:  # autocommit: the lock outlives no transaction
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

    def insert_pair(self, record: PairRecord) -> bool:
        """The pair row and its blob references in one statement (atomic on its own in autocommit:
        one round trip, no BEGIN/COMMIT); False when the upload id is already stored. Two replicas
        inserting one upload id at once: the second waits for the first's commit, then inserts nothing."""
        values = pair_values(record)
        with self._statements() as conn:
            inserted = conn.execute(
                f"WITH p AS (INSERT INTO pairs ({INSERT_COLUMNS}) VALUES ({', '.join('?' * len(values))}) "
                "ON CONFLICT (upload_id) DO NOTHING RETURNING upload_id), "
                "b AS (INSERT INTO pair_blobs (sha256, upload_id) SELECT s, p.upload_id FROM p, unnest(?::text[]) AS s "
                "ON CONFLICT DO NOTHING) "
                "SELECT count(*) AS n FROM p",
                (*values, pair_blob_shas(record)),
            ).fetchone()["n"]
        return inserted == 1

    def rate_hit(self, device_id: str, limit_per_min: int, now: float | None = None) -> bool:
        """Count one upload of ``device_id`` in the current minute; False when over ``limit_per_min``
        (counted across every replica on this database)."""
        now = time.time() if now is None else now
        window = int(now // 60)
        with self._tx() as conn:
            hits = conn.execute(
                "INSERT INTO rate_windows (device_id, window_start, hits) VALUES (?, ?, 1) "
                "ON CONFLICT (device_id, window_start) DO UPDATE SET hits = rate_windows.hits + 1 RETURNING hits",
                (device_id, window),
            ).fetchone()["hits"]
            if hits == 1:  # first hit of a new window: forget old windows of this device
                conn.execute("DELETE FROM rate_windows WHERE device_id = ? AND window_start < ?", (device_id, window))
        return hits <= limit_per_min
