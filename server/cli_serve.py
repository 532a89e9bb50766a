"""``msmine serve --root DIR``: run the collection server (FastAPI + uvicorn, SQLite + files under DIR).

Fleet scale: ``--db postgresql://USER@HOST:PORT/DB`` keeps the metadata in PostgreSQL and lets any
number of replicas serve it (``--root`` then holds only the blobs, when they are local);
``--blobs s3://BUCKET/PREFIX`` keeps the files in S3-compatible object storage;
``--trusted-proxies 127.0.0.1`` believes X-Forwarded-For from the reverse proxy in front.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from msmine.errors import UserError

log = logging.getLogger(__name__)


def parse_rate(text: str) -> int:
    """``"120/min"`` or ``"120"`` -> 120 uploads per minute per device; ``0`` disables."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:/\s*min)?\s*", text)
    if not m:
        raise UserError(f"--rate-limit expects N/min (e.g. 120/min, 0 to disable), got {text!r}")
    return int(m.group(1))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, type=Path, help="data directory (SQLite database + files)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--max-upload-mb", type=float, default=None, help="largest upload body in MiB (default 100)")
    parser.add_argument("--rate-limit", default=None, metavar="N/min",
                        help="uploads per minute per device (default 120/min; 0 disables)")
    parser.add_argument("--db", default=None, metavar="postgresql://USER@HOST:PORT/DB",
                        help="metadata in PostgreSQL, shared by several replicas (default: SQLite under --root)")
    parser.add_argument("--blobs", default=None, metavar="s3://BUCKET[/PREFIX]",
                        help="files in S3-compatible object storage (default: under --root)")
    parser.add_argument("--s3-endpoint", default=None, metavar="URL",
                        help="S3 endpoint, e.g. http://127.0.0.1:9000 (default: AWS or $AWS_ENDPOINT_URL)")
    parser.add_argument("--trusted-proxies", default=None, metavar="ADDRS",
                        help="reverse proxies whose X-Forwarded-For is believed (comma-separated, or '*')")
    parser.add_argument("--config", type=Path, default=None, help="YAML file with ServerConfig fields")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a ServerConfig field, e.g. --set dedup_hamming=8")
    parser.add_argument("--save-config", action="store_true", help="write the resolved config to ROOT/config.yaml")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from msmine.config import load_config, save_config
    from msmine.server.app import create_app
    from msmine.server.config import ServerConfig
    from msmine.server.connections import MAX_HEADER_BYTES, guarded_h11

    overrides = list(args.overrides)
    if args.max_upload_mb is not None:
        overrides.append(f"max_upload_mb={args.max_upload_mb}")
    if args.rate_limit is not None:
        overrides.append(f"rate_limit_per_min={parse_rate(args.rate_limit)}")
    for flag, field in (("db", "db"), ("blobs", "blobs"), ("s3_endpoint", "s3_endpoint_url"),
                        ("trusted_proxies", "trusted_proxies")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{field}={value}")
    config = load_config(ServerConfig, args.config, overrides)
    if config.max_upload_mb <= 0:
        raise UserError(f"--max-upload-mb must be positive, got {config.max_upload_mb}")
    for name in ("max_json_kb", "body_timeout_s", "body_idle_timeout_s", "body_min_rate_kb", "keep_alive_timeout_s"):
        if getattr(config, name) <= 0:
            raise UserError(f"{name} must be positive, got {getattr(config, name)}")
    root = args.root
    if root.exists() and not root.is_dir():
        raise UserError(f"--root {root} exists and is not a directory")
    try:
        app = create_app(root, config)
    except OSError as exc:
        raise UserError(f"cannot open server root {root}: {exc}") from None
    if args.save_config:
        save_config(config, root / "config.yaml")
    where = f"root {root}"
    if config.db:
        from msmine.server.metadata_pg import redact

        where = f"metadata {redact(config.db)}, blobs {config.blobs or root}"
    log.info("msmine server on http://%s:%d (%s; web page at /, API docs at /docs)", args.host, args.port, where)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                    http=guarded_h11(config.header_timeout_s, config.max_connections_per_client),
                    timeout_keep_alive=config.keep_alive_timeout_s,
                    limit_concurrency=config.max_connections or None,
                    h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                    proxy_headers=bool(config.trusted_proxies),
                    forwarded_allow_ips=config.trusted_proxies or None)
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
    return 0
