"""How large a request body may be, per route: one table the guard and the routes both read.

The guard (:mod:`msmine.server.guard`) counts every body against :func:`body_limit` while it streams
in; the multipart routes pass the same figure to their reader, which also limits each part.
"""

from __future__ import annotations

from msmine.server.config import ServerConfig
from msmine.wire import API_PREFIX, UPLOAD_PATH

MODELS_PATH = f"{API_PREFIX}/models"
LABELS_PATH = f"{API_PREFIX}/labels"
MAX_METADATA_BYTES = 1 << 20  # the metadata part of POST /api/v1/models
FORM_OVERHEAD = 1 << 16  # boundaries and part headers of a multipart form


def mib(value: float) -> int:
    return int(value * (1 << 20))


def body_limit(config: ServerConfig, method: str, path: str) -> int:
    """Largest body, in bytes, that ``method path`` may send."""
    if method == "POST":
        if path == UPLOAD_PATH:
            return mib(config.max_upload_mb)
        if path == MODELS_PATH:
            return mib(config.max_model_mb) + 2 * MAX_METADATA_BYTES + FORM_OVERHEAD
        if path == LABELS_PATH:
            return mib(config.max_labels_mb) + FORM_OVERHEAD
    return int(config.max_json_kb * 1024)
