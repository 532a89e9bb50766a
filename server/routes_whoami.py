"""``GET /api/v1/whoami``: whose token this is, so a device can check its identity at start."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from msmine.server.auth import require_device_or_team
from msmine.server.records import TokenRecord
from msmine.wire import WHOAMI_PATH

router = APIRouter(tags=["devices"])


@router.get(WHOAMI_PATH, summary="The token's own record: role and, for a device token, its device id")
async def whoami(token: TokenRecord = Depends(require_device_or_team)) -> dict:
    return {"role": token.role, "device_id": token.device_id, "name": token.name}
