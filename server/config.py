"""Typed configuration of the collection server (YAML + ``--set key=value`` via msmine.config)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServerConfig:
    # largest accepted upload body (manifest + three images), MiB; larger bodies get 413 before parsing
    max_upload_mb: float = 100.0
    # largest accepted model file in POST /api/v1/models, MiB
    max_model_mb: float = 2048.0
    # largest accepted label file (COCO JSON or YOLO zip) in POST /api/v1/labels, MiB
    max_labels_mb: float = 256.0
    # uploads per minute allowed per device (token bucket, burst = this many); 0 disables the limit
    rate_limit_per_min: int = 120
    # two pairs are near-duplicates when the Hamming distance of their pair dHash (128 bits:
    # 64 visible + 64 thermal) is at or below this; used by POST /api/v1/batches unless overridden
    dedup_hamming: int = 12
    # largest page GET /api/v1/pairs returns
    max_page_size: int = 500
    # largest K a labelling batch may ask for
    max_batch_k: int = 50000
    # fsync each stored file before it is renamed into place and before the database commit
    # (protects against power loss; a killed process is safe either way)
    fsync: bool = True
