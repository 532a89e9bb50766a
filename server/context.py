"""The objects every request handler needs, built once per app."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from msmine.errors import UserError
from msmine.server.blobs import BlobStore, LocalBlobStore
from msmine.server.config import ServerConfig
from msmine.server.errors import StoreError
from msmine.server.metadata import MetadataStore, SqliteMetadataStore
from msmine.server.ratelimit import RateLimiter, SharedRateLimiter

log = logging.getLogger(__name__)


@dataclass
class ServerContext:
    root: Path  # server data directory
    config: ServerConfig  # resolved configuration
    meta: MetadataStore  # tokens, pairs, labels, models, batches
    blobs: BlobStore  # files, named by sha256
    limiter: RateLimiter | SharedRateLimiter  # per-device upload rate limit
    lock_fd: int | None = field(default=None, repr=False)  # exclusive lock on ROOT/server.lock

    def close(self) -> None:
        self.meta.close()
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def lock_root(root: Path) -> int | None:
    """Hold an exclusive lock on ``root`` so that a second server cannot sweep the first one's files."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return None
    fd = os.open(root / "server.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UserError(f"another msmine server is already serving {root} (one server per root)") from None
    return fd


def _open_blobs(root: Path, config: ServerConfig) -> BlobStore:
    if not config.blobs:
        return LocalBlobStore(root, fsync=config.fsync)
    from msmine.server.blobs_s3 import S3BlobStore, S3Config

    s3 = S3Config.from_url(config.blobs, endpoint_url=config.s3_endpoint_url or None,
                           region=config.s3_region or None, create_bucket=config.s3_create_bucket)
    return S3BlobStore(s3)


def open_metadata(root: Path, config: ServerConfig) -> MetadataStore:
    """The metadata store the config names: SQLite under ``root`` (default) or PostgreSQL (``db``)."""
    if config.db:
        if not config.db.startswith(("postgresql://", "postgres://")):
            raise UserError(f"--db must be a postgresql://USER@HOST:PORT/DB URL, got {config.db.split('@')[-1]!r}")
        from msmine.server.metadata_pg import PostgresMetadataStore

        try:
            return PostgresMetadataStore(config.db, max_size=max(2, config.db_pool_size))
        except StoreError as exc:
            raise UserError(str(exc)) from None
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return SqliteMetadataStore(root / SqliteMetadataStore.FILENAME)


def open_stores(root: Path, config: ServerConfig) -> tuple[MetadataStore, BlobStore]:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    meta = open_metadata(root, config)
    try:
        blobs = _open_blobs(root, config)
    except BaseException:
        meta.close()
        raise
    return meta, blobs


def shared(config: ServerConfig) -> bool:
    """Several replicas may serve these stores at once (PostgreSQL metadata)."""
    return bool(config.db)


def build_context(root: Path, config: ServerConfig) -> ServerContext:
    """Open the stores and sweep what a crash may have left (temporary files, unreferenced blobs).

    One server per root with SQLite (an exclusive lock on ``ROOT/server.lock``); with PostgreSQL any
    number of replicas share the database and the blob store, the sweep runs on one replica at a time
    (an advisory lock) and spares files younger than ``sweep_min_age_s``, and the per-device rate
    limit is counted in the database."""
    meta, blobs = open_stores(root, config)
    lock_fd = None
    try:
        if shared(config):
            with meta.run_once("blob-sweep") as mine:
                if mine:
                    blobs.sweep(meta.referenced_blobs(), min_age_s=config.sweep_min_age_s)
            limiter = SharedRateLimiter(meta, config.rate_limit_per_min)
        else:
            lock_fd = lock_root(Path(root))
            if config.blobs:
                blobs.sweep(meta.referenced_blobs(), min_age_s=config.sweep_min_age_s)
            else:
                blobs.sweep(meta.referenced_blobs())
            limiter = RateLimiter(config.rate_limit_per_min)
    except BaseException:
        meta.close()
        if lock_fd is not None:
            os.close(lock_fd)
        raise
    return ServerContext(root=Path(root).resolve(), config=config, meta=meta, blobs=blobs,
                         limiter=limiter, lock_fd=lock_fd)


def get_context(request: Request) -> ServerContext:
    return request.app.state.ctx
