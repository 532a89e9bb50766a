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
    # largest body of every other request (the JSON endpoints, e.g. POST /api/v1/batches), KiB;
    # counted while it streams in (413 the moment it is passed), whatever Content-Length claims
    max_json_kb: float = 256.0
    # uploads per minute allowed per device (token bucket, burst = this many); 0 disables the limit
    rate_limit_per_min: int = 120
    # failed token checks (a wrong or revoked token) allowed per client address per window; past
    # that, requests from the address without a valid token get 429 + Retry-After until the window
    # ends (valid tokens are never throttled); 0 disables
    auth_fail_limit: int = 20
    auth_fail_window_s: float = 60.0
    # slow clients: the request line and headers must arrive within header_timeout_s of the
    # connection opening (or of the previous response on a keep-alive connection), else 408 + close
    header_timeout_s: float = 10.0
    # a request body may pause at most body_idle_timeout_s between chunks, and must arrive within
    # body_timeout_s plus one second per body_min_rate_kb KiB received (a minimum rate, as Apache's
    # mod_reqtimeout "body=...,MinRate=..."); else 408 + close
    body_idle_timeout_s: float = 15.0
    body_timeout_s: float = 30.0
    body_min_rate_kb: float = 8.0
    # idle keep-alive connections are closed after this many seconds
    keep_alive_timeout_s: float = 5.0
    # concurrent TCP connections per client address (503 + close for one more); 0 disables
    max_connections_per_client: int = 32
    # concurrent connections in all (uvicorn's limit_concurrency: 503 past it); 0 disables
    max_connections: int = 2048
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

    # -- fleet scale (docs/server.md "Fleet scale") -------------------------------------------------
    # metadata database: "" keeps SQLite under --root (one server per root); a DSN
    # postgresql://USER[:PASSWORD]@HOST:PORT/DB puts it in PostgreSQL, shared by every replica
    db: str = ""
    # connections each replica keeps in its PostgreSQL pool
    db_pool_size: int = 8
    # blob store: "" keeps files under --root (a local disk, or a volume shared by the replicas);
    # s3://BUCKET[/PREFIX] puts them in S3-compatible object storage (credentials from the standard
    # AWS environment variables or files)
    blobs: str = ""
    s3_endpoint_url: str = ""  # e.g. http://minio:9000; "" = AWS (or $AWS_ENDPOINT_URL)
    s3_region: str = ""
    s3_create_bucket: bool = False  # create the bucket at start when it does not exist
    # with shared stores, the start-up sweep removes only unreferenced blobs and temporary files
    # older than this (another replica may be writing them right now)
    sweep_min_age_s: float = 3600.0
    # addresses of reverse proxies whose X-Forwarded-For is believed (comma-separated, "*" for any);
    # behind nginx the per-client limits then count devices, not the proxy
    trusted_proxies: str = ""
