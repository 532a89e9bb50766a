"""Access tokens: random secrets shown once, stored only as their SHA-256.

A token is ``msm_`` + 43 URL-safe characters (256 random bits), so an unsalted SHA-256 is enough to
store it: nobody can brute-force a 256-bit secret from its hash.
"""

from __future__ import annotations

import hashlib
import secrets

from msmine.errors import UserError
from msmine.server.metadata import MetadataStore
from msmine.server.records import ROLES, TokenRecord
from msmine.wire import DEVICE_ID_RE

TOKEN_PREFIX = "msm_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(store: MetadataStore, *, role: str, device_id: str | None = None,
                 name: str | None = None) -> tuple[str, TokenRecord]:
    """Create a token; returns the secret (shown once) and its stored record."""
    if role not in ROLES:
        raise UserError(f"role must be one of {list(ROLES)}, got {role!r}")
    if role == "device":
        if not device_id or not DEVICE_ID_RE.match(device_id):
            raise UserError(f"device name must match {DEVICE_ID_RE.pattern}, got {device_id!r}")
        name = name or device_id
    else:
        device_id = None
        name = name or "data-team"
    secret = new_token()
    record = store.add_token(name=name, role=role, device_id=device_id, token_hash=hash_token(secret))
    return secret, record


def lookup(store: MetadataStore, token: str) -> TokenRecord | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    return store.find_token(hash_token(token))
