"""Bearer-token authentication and role checks as FastAPI dependencies.

The token itself is verified earlier, before any body is read, by :class:`msmine.server.guard.RequestGuard`;
these dependencies check the role (403) and declare the bearer scheme in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from msmine.server.context import get_context
from msmine.server.guard import TOKEN_STATE_KEY
from msmine.server.records import TokenRecord
from msmine.server.tokens import lookup

bearer = HTTPBearer(auto_error=False, description="`msmine token create` prints a token; send `Authorization: Bearer <token>`")

DEVICE = "device"
TEAM = "data-team"


def require(*roles: str) -> Callable[..., TokenRecord]:
    """Dependency: a valid, unrevoked token whose role is one of ``roles`` (401 / 403 otherwise)."""

    # async: an indexed SQLite read (tens of microseconds) costs less than a hop to the thread pool
    async def dependency(request: Request,
                         credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> TokenRecord:
        record = getattr(request.state, TOKEN_STATE_KEY, None)  # verified by the guard, before the body
        if record is None and credentials is not None:  # the app served without its guard
            record = lookup(get_context(request).meta, credentials.credentials)
        if record is None and credentials is None:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        if record is None:
            raise HTTPException(401, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
        if record.role not in roles:
            raise HTTPException(403, f"a {record.role} token may not use this endpoint (needs {' or '.join(roles)})")
        return record

    dependency.__name__ = "require_" + "_or_".join(r.replace("-", "_") for r in roles)
    return dependency


require_device = require(DEVICE)
require_team = require(TEAM)
require_device_or_team = require(DEVICE, TEAM)
