"""Content-addressed file storage: every file is named by its SHA-256, never by a client's name.

:class:`BlobStore` is the interface the server uses; :class:`LocalBlobStore` keeps files under
``ROOT/blobs/<aa>/<sha256>``. A later backend (S3-compatible object storage) implements the same
protocol. Writes go to ``ROOT/tmp``, are fsynced, then renamed into place, so a killed server leaves
at most a temporary file or an unreferenced blob, both removed by :meth:`LocalBlobStore.sweep` at
startup.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from msmine.durable import fsync_dir

log = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class BlobWriter(Protocol):
    """An in-progress streamed write; ``commit`` returns ``(sha256, bytes)``."""

    def write(self, data: bytes) -> None: ...

    def sha256(self) -> str:
        """Hash of what was written so far."""

    def commit(self) -> tuple[str, int]: ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Store ``data`` (idempotent); return its SHA-256 hex (``sha256``: already verified by the caller)."""

    def writer(self) -> BlobWriter:
        """Start a streamed write of a large file."""

    def exists(self, sha256: str) -> bool: ...

    def read(self, sha256: str) -> bytes: ...

    def local_path(self, sha256: str) -> Path | None:
        """A filesystem path for serving the blob directly, or None for remote stores."""

    def delete(self, sha256: str) -> None: ...

    def iter_all(self) -> Iterator[str]: ...

    def sweep(self, referenced: set[str]) -> int:
        """Remove temporary files and blobs not in ``referenced``; return how many were removed."""


def _check_sha(sha256: str) -> str:
    if not isinstance(sha256, str) or not SHA256_RE.match(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


class HashingWriter:
    """A streamed write into a temporary file that hashes as it goes (the content address is only
    known at the end); stores subclass it with their ``commit`` and ``abort``."""

    def __init__(self, file) -> None:
        self._file = file
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self._size += len(data)

    def sha256(self) -> str:
        return self._hash.hexdigest()


class _LocalWriter(HashingWriter):
    def __init__(self, store: LocalBlobStore) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="stream-", suffix=".part")
        super().__init__(os.fdopen(fd, "wb"))
        self._tmp = Path(name)

    def commit(self) -> tuple[str, int]:
        sha = self._hash.hexdigest()
        self._file.flush()
        if self._store.fsync:
            os.fsync(self._file.fileno())
        self._file.close()
        self._store._place(self._tmp, sha)
        return sha, self._size

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class LocalBlobStore:
    """Blobs on the local filesystem under ``root``."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self.blob_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        self.fsync = fsync
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        sha = _check_sha(sha256)
        return self.blob_dir / sha[:2] / sha

    def _place(self, tmp: Path, sha: str) -> None:
        final = self.path(sha)
        if final.exists():
            tmp.unlink(missing_ok=True)
            return
        final.parent.mkdir(exist_ok=True)
        os.replace(tmp, final)
        if self.fsync:
            fsync_dir(final.parent)

    def put(self, data: bytes, sha256: str | None = None) -> str:
        sha = _check_sha(sha256) if sha256 is not None else hashlib.sha256(data).hexdigest()
        if self.path(sha).exists():
            return sha
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="blob-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            self._place(Path(name), sha)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return sha

    def writer(self) -> _LocalWriter:
        return _LocalWriter(self)

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def local_path(self, sha256: str) -> Path | None:
        return self.path(sha256)

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def iter_all(self) -> Iterator[str]:
        for sub in sorted(self.blob_dir.iterdir()):
            if not sub.is_dir():
                continue
            for f in sorted(sub.iterdir()):
                if SHA256_RE.match(f.name) and f.name[:2] == sub.name:
                    yield f.name

    def sweep(self, referenced: set[str], min_age_s: float = 0.0) -> int:
        """Remove temporary files and unreferenced blobs. ``min_age_s`` > 0 (a volume shared by several
        replicas) spares files younger than that: another replica may be writing or committing them."""
        removed = 0
        cutoff = time.time() - min_age_s

        def old_enough(path: Path) -> bool:
            if min_age_s <= 0:
                return True
            try:
                return path.stat().st_mtime < cutoff
            except FileNotFoundError:
                return False

        for tmp in self.tmp_dir.iterdir():
            if tmp.is_file() and old_enough(tmp):
                tmp.unlink(missing_ok=True)
                removed += 1
        for sub in self.blob_dir.iterdir():
            if not sub.is_dir():
                if old_enough(sub):
                    sub.unlink(missing_ok=True)
                    removed += 1
                continue
            for f in sub.iterdir():
                if (f.name not in referenced or f.name[:2] != sub.name) and old_enough(f):
                    f.unlink(missing_ok=True)
                    removed += 1
        if removed:
            log.warning("startup sweep removed %d temporary or unreferenced file(s)", removed)
        return removed
