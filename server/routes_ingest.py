"""POST /api/v1/uploads: a device sends one mined pair."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from msmine.server.auth import require_device
from msmine.server.context import get_context
from msmine.server.errors import IngestError, http_status
from msmine.server.ingest import ingest_pair
from msmine.server.limits import body_limit
from msmine.server.multipart_stream import read_multipart
from msmine.server.ratelimit import RateLimiter
from msmine.server.records import TokenRecord
from msmine.server.views import ingest_json
from msmine.wire import (
    FILE_PARTS,
    MANIFEST_PART,
    MASK_PARTS,
    MAX_FILE_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_MASK_BYTES,
    UPLOAD_PATH,
)

router = APIRouter(tags=["ingest"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": [MANIFEST_PART, *FILE_PARTS],
            "properties": {
                MANIFEST_PART: {"type": "string", "format": "binary",
                                "description": "manifest JSON (msmine.wire, schema 1 or 2)"},
                **{p: {"type": "string", "format": "binary", "description": f"{p} image (PNG or JPEG)"}
                   for p in FILE_PARTS},
                **{p: {"type": "string", "format": "binary",
                       "description": f"optional: the {b} branch's class-id mask (8-bit greyscale PNG), "
                                      "declared in manifest.masks"}
                   for b, p in MASK_PARTS.items()},
            },
        }}},
    }
}


@router.post(
    UPLOAD_PATH,
    status_code=201,
    summary="Upload one mined pair (device token)",
    description="Idempotent by manifest.upload_id: a first upload answers 201, a repeat 200 with the original "
                "record and `\"duplicate\": true`. 400 malformed/invalid, 403 wrong device, 413 too large, "
                "415 not multipart, 429 rate limited (Retry-After).",
    openapi_extra=_UPLOAD_BODY,
    responses={200: {"description": "duplicate of a stored upload"}, 400: {}, 413: {}, 415: {}, 429: {}},
)
async def upload(request: Request, token: TokenRecord = Depends(require_device)) -> JSONResponse:
    ctx = get_context(request)
    key = token.device_id or token.name
    if getattr(ctx.limiter, "waits_on_network", False):  # counted in the database: off the event loop
        wait = await run_in_threadpool(ctx.limiter.acquire, key)
    else:
        wait = ctx.limiter.acquire(key)
    if wait > 0:
        raise HTTPException(429, f"device {token.device_id!r} exceeds {ctx.config.rate_limit_per_min} uploads/min",
                            headers={"Retry-After": RateLimiter.retry_after_header(wait)})
    limits = {MANIFEST_PART: MAX_MANIFEST_BYTES, **{p: MAX_FILE_BYTES for p in FILE_PARTS},
              **{p: MAX_MASK_BYTES for p in MASK_PARTS.values()}}
    parts = await read_multipart(request, max_body=body_limit(ctx.config, "POST", UPLOAD_PATH),
                                 part_limits=limits, required=(MANIFEST_PART, *FILE_PARTS))
    files = {p: bytes(parts[p].data) for p in (*FILE_PARTS, *MASK_PARTS.values()) if p in parts}
    try:
        result = await run_in_threadpool(ingest_pair, ctx.meta, ctx.blobs, token,
                                         bytes(parts[MANIFEST_PART].data), files)
    except IngestError as exc:
        raise HTTPException(http_status(exc), str(exc)) from None
    return JSONResponse(ingest_json(result), status_code=200 if result.duplicate else 201)
