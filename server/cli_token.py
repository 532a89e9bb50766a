"""``msmine token create|list|revoke --root DIR``: manage access tokens (stored hashed in the database).

    msmine token create --root srv --device pole-17        # a device token (upload + fetch models)
    msmine token create --root srv --role data-team        # a data-team token (read, rank, export, publish)
    msmine token list --root srv
    msmine token revoke --root srv --id 3
    msmine token list --db postgresql://msmine@db:5432/msmine    # a fleet-scale server's database
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from msmine.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a token and print it (shown once)")
    _where(Path, create)
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--device", help="device name (= manifest device_id) for a device token")
    who.add_argument("--role", choices=["data-team"], help="create a data-team token")
    create.add_argument("--name", help="label shown by `token list` (default: device name or 'data-team')")
    create.add_argument("--json", action="store_true", help="print JSON {token, id, role, ...}")
    lst = sub.add_parser("list", help="list tokens (never their secrets)")
    _where(Path, lst)
    revoke = sub.add_parser("revoke", help="revoke a token by id")
    _where(Path, revoke)
    revoke.add_argument("--id", required=True, type=int, help="token id from `token list`")


def _where(path_type, parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--root", type=path_type, help="server data directory (SQLite)")
    group.add_argument("--db", metavar="postgresql://USER@HOST:PORT/DB", help="the server's PostgreSQL database")


def _open(root: Path | None, db: str | None = None):
    from msmine.server.config import ServerConfig
    from msmine.server.context import open_metadata

    if db:
        return open_metadata(Path("."), ServerConfig(db=db))
    if root.exists() and not root.is_dir():
        raise UserError(f"--root {root} is not a directory")
    return open_metadata(root, ServerConfig())


def _time(t: float | None) -> str:
    return "-" if t is None else dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def run(args: argparse.Namespace) -> int:
    from msmine.server.tokens import create_token

    meta = _open(args.root, args.db)
    try:
        if args.token_command == "create":
            role = "device" if args.device else "data-team"
            secret, record = create_token(meta, role=role, device_id=args.device, name=args.name)
            if args.json:
                print(json.dumps({"token": secret, "id": record.id, "role": record.role, "name": record.name,
                                  "device_id": record.device_id}))
            else:
                print(secret)
        elif args.token_command == "list":
            print(f"{'id':>4}  {'role':<9}  {'name':<24}  {'device':<16}  {'created':<20}  revoked")
            for t in meta.list_tokens():
                print(f"{t.id:>4}  {t.role:<9}  {t.name:<24}  {t.device_id or '-':<16}  {_time(t.created_at):<20}  "
                      f"{_time(t.revoked_at)}")
        elif args.token_command == "revoke":
            if not meta.revoke_token(args.id):
                raise UserError(f"no active token with id {args.id}")
            print(f"revoked token {args.id}")
    finally:
        meta.close()
    return 0
