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
from msmine.server.metadata import MetadataStore, SqliteMetadataStore
from msmine.server.ratelimit import RateLimiter

log = logging.getLogger(__name__)


@dataclass
class ServerContext:
    root: Path  # server data directory
    config: ServerConfig  # resolved configuration
    meta: MetadataStore  # tokens, pairs, labels, models, batches
    blobs: BlobStore  # files, named by sha256
    limiter: RateLimiter  # per-device upload rate limit
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


def open_stores(root: Path, config: ServerConfig) -> tuple[MetadataStore, LocalBlobStore]:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return SqliteMetadataStore(root / SqliteMetadataStore.FILENAME), LocalBlobStore(root, fsync=config.fsync)


def build_context(root: Path, config: ServerConfig) -> ServerContext:
    """Open the stores and sweep what a crash may have left (temporary files, unreferenced blobs)."""
    meta, blobs = open_stores(root, config)
    try:
        lock_fd = lock_root(Path(root))
    except UserError:
        meta.close()
        raise
    blobs.sweep(meta.referenced_blobs())
    return ServerContext(root=Path(root).resolve(), config=config, meta=meta, blobs=blobs,
                         limiter=RateLimiter(config.rate_limit_per_min), lock_fd=lock_fd)


def get_context(request: Request) -> ServerContext:
    return request.app.state.ctx
