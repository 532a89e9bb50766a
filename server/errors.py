"""The server's own exceptions: what the storage seam and the ingest raise, never a driver's or HTTP's.

A :class:`~msmine.server.metadata.MetadataStore` (SQLite today, PostgreSQL later) raises only
:class:`StoreError` and its subclasses, so no route imports a database driver; :func:`ingest_pair`
raises :class:`IngestError` subclasses, so it knows nothing of HTTP. The routes map them to status
codes (:data:`HTTP_STATUS`).
"""

from __future__ import annotations


class StoreError(Exception):
    """The metadata store failed (unavailable, corrupt, a constraint the caller did not expect)."""


class DuplicateError(StoreError):
    """A record with this key already exists (e.g. a model version published twice)."""


class NotFoundError(StoreError):
    """A record the operation refers to does not exist (e.g. labels for an unknown pair)."""


class IngestError(Exception):
    """An upload the server refuses; the message says why, in one line."""


class InvalidUpload(IngestError):
    """The manifest or a file does not follow the wire format (HTTP 400)."""


class WrongDevice(IngestError):
    """The manifest names another device than the uploading token's (HTTP 403)."""


HTTP_STATUS: dict[type[Exception], int] = {
    InvalidUpload: 400,
    WrongDevice: 403,
    NotFoundError: 404,
    DuplicateError: 409,
    StoreError: 503,
}


def http_status(exc: Exception) -> int:
    """The HTTP status a route answers for ``exc`` (the most specific class listed wins)."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
