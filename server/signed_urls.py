"""Short-lived HMAC-signed image URLs: a labelling tool shows a pair's images without a token.

A data-team token asks ``POST /api/v1/signed-urls`` for the URLs of some pairs' images (or
``POST /api/v1/batches/<batch_id>/label-studio`` for a whole labelling batch as Label Studio tasks:
the labelling config, one task per pair with both images by signed URL and the chosen branch's
predictions, what ``msmine label-studio push`` imports); each URL is
``/signed/<upload_id>/<part>?exp=<unix seconds>&sig=<hex>``, where ``sig`` is the HMAC-SHA256 of
``<upload_id>/<part>/<exp>`` under the server's signing key. ``GET /signed/...`` needs no token (it
lies outside ``/api/``, which the guard protects): it serves the image until ``exp`` and answers 403
for an expired, tampered or foreign signature. A labeller's browser (Label Studio loads task images
by URL) so sees exactly the images it was given, for as long as they were given, and never holds a
token that could list, label or delete anything.

The signing key is ``$MSMINE_SIGNING_KEY`` when set (replicas behind a load balancer share it so),
else ``ROOT/signing.key``, 32 random bytes made on first use (mode 0600). Replacing the key revokes
every URL signed with the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from msmine.server.auth import require_team
from msmine.server.context import get_context
from msmine.server.label_export import (
    BRANCHES,
    _label_studio_pairs,
    _predicted_masks,
    label_studio_config,
    merged_class_names,
)
from msmine.wire import API_PREFIX, FILE_PARTS

log = logging.getLogger(__name__)

SIGNED_PREFIX = "/signed"
SIGNED_URLS_PATH = f"{API_PREFIX}/signed-urls"
KEY_ENV = "MSMINE_SIGNING_KEY"
KEY_FILE = "signing.key"
DEFAULT_TTL_S = 7 * 86400  # a labelling batch's working week
MIN_TTL_S = 60
MAX_TTL_S = 90 * 86400
MAX_PAIRS = 10000  # per request
UPLOAD_ID = r"^[0-9a-f]{64}$"
BATCH_ID = r"^[0-9a-f]{16}$"
LS_IMAGE_PARTS = {"visible": "visible", "thermal": "thermal"}  # image name in the labelling config -> file part
SIG = r"^[0-9a-f]{64}$"

Part = Literal["visible", "thermal", "heatmap"]


def load_key(root: Path) -> bytes:
    """The signing key: ``$MSMINE_SIGNING_KEY`` (at least 16 characters), else ``root/signing.key``
    (created with 32 random bytes, mode 0600, when missing)."""
    env = os.environ.get(KEY_ENV, "")
    if env:
        if len(env) < 16:
            raise ValueError(f"${KEY_ENV} must be at least 16 characters")
        return env.encode()
    path = Path(root) / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) < 16:
            raise ValueError(f"{path} holds fewer than 16 bytes; delete it to make a new key") from None
        return key
    key = secrets.token_bytes(32)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    log.info("made a new URL signing key %s", path)
    return key


def signature(key: bytes, upload_id: str, part: str, exp: int) -> str:
    return hmac.new(key, f"{upload_id}/{part}/{int(exp)}".encode(), hashlib.sha256).hexdigest()


def signed_path(key: bytes, upload_id: str, part: str, exp: int) -> str:
    """The path and query of a signed URL (prefix it with the server's public base URL)."""
    return f"{SIGNED_PREFIX}/{upload_id}/{part}?exp={int(exp)}&sig={signature(key, upload_id, part, exp)}"


def verify(key: bytes, upload_id: str, part: str, exp: int, sig: str, now: float | None = None) -> str | None:
    """None when ``sig`` signs this image until ``exp`` and ``exp`` has not passed; else why not."""
    if not hmac.compare_digest(signature(key, upload_id, part, exp), sig):
        return "bad signature"
    if exp <= (time.time() if now is None else now):
        return "link expired"
    return None


def _key(request: Request) -> bytes:
    state = request.app.state
    key = getattr(state, "signing_key", None)
    if key is None:
        key = load_key(get_context(request).root)
        state.signing_key = key
    return key


class SignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upload_ids: list[str] = Field(..., min_length=1, max_length=MAX_PAIRS)
    parts: list[Part] = Field(default_factory=lambda: ["visible", "thermal"], min_length=1)
    expires_in_s: int = Field(DEFAULT_TTL_S, ge=MIN_TTL_S, le=MAX_TTL_S,
                              description="lifetime of the URLs in seconds (default 7 days)")


api_router = APIRouter(prefix=API_PREFIX, tags=["data team"], dependencies=[Depends(require_team)])
open_router = APIRouter(tags=["signed images"])


@api_router.post("/signed-urls", summary="Short-lived signed URLs of pairs' images (for a labelling tool; "
                                        "the URLs need no token)")
def sign_urls(request: Request, body: SignRequest) -> dict:
    ctx = get_context(request)
    missing = [uid for uid in dict.fromkeys(body.upload_ids) if ctx.meta.get_pair(uid) is None]
    if missing:
        raise HTTPException(404, f"no pair with upload id {missing[0]}"
                                 + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    key = _key(request)
    exp = int(time.time()) + body.expires_in_s
    urls = {uid: {part: signed_path(key, uid, part, exp) for part in dict.fromkeys(body.parts)}
            for uid in dict.fromkeys(body.upload_ids)}
    return {"expires_at": exp, "urls": urls}


@open_router.get(SIGNED_PREFIX + "/{upload_id}/{part}", response_class=Response,
                 summary="A pair's image by signed URL (no token; 403 when expired or tampered)",
                 responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}, 403: {}})
def signed_file(request: Request, upload_id: str = PathParam(..., pattern=UPLOAD_ID), part: Part = PathParam(...),
                exp: int = Query(..., ge=0, le=1 << 40), sig: str = Query(..., pattern=SIG)) -> Response:
    why = verify(_key(request), upload_id, part, exp, sig)
    if why is not None:
        raise HTTPException(403, why)
    ctx = get_context(request)
    record = ctx.meta.get_pair(upload_id)
    if record is None or part not in FILE_PARTS:
        raise HTTPException(404, "no such image")
    info = record.files[part]
    remaining = max(0, exp - int(time.time()))
    # Label Studio's editor loads task images cross-origin (crossorigin="anonymous", for its canvas): the
    # URL itself is the credential and carries no cookie, so any origin may read what it names
    headers = {"ETag": f'"{info["sha256"]}"', "Cache-Control": f"private, max-age={min(remaining, 86400)}",
               "Access-Control-Allow-Origin": "*"}
    path = ctx.blobs.local_path(info["sha256"])
    if path is not None:
        return FileResponse(path, media_type=info["media_type"], headers=headers)
    return Response(ctx.blobs.read(info["sha256"]), media_type=info["media_type"], headers=headers)


class LabelStudioRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    branch: Literal[BRANCHES] = Field("fused", description="whose predictions become the pre-annotations")
    masks: Literal["polygon", "brush"] = Field("polygon", description="segmentation pre-annotations as editable "
                                                                      "polygons or exact brushes")
    expires_in_s: int = Field(DEFAULT_TTL_S, ge=MIN_TTL_S, le=MAX_TTL_S,
                              description="lifetime of the image URLs in seconds (default 7 days)")


@api_router.post("/batches/{batch_id}/label-studio",
                 summary="A labelling batch as Label Studio tasks: the labelling config (visible and thermal side "
                         "by side), one task per pair in rank order with signed image URLs and the branch's "
                         "predictions")
def label_studio_tasks(request: Request, body: LabelStudioRequest,
                       batch_id: str = PathParam(..., pattern=BATCH_ID)) -> dict:
    ctx = get_context(request)
    batch = ctx.meta.get_batch(batch_id)
    if batch is None:
        raise HTTPException(404, f"no batch {batch_id}")
    manifests = []
    for uid in batch.upload_ids:
        record = ctx.meta.get_pair(uid)
        if record is not None:
            manifests.append(json.loads(record.manifest_json))
    names = merged_class_names(manifests)
    masks = _predicted_masks(ctx.meta, ctx.blobs, manifests, body.branch)
    tasks = _label_studio_pairs(manifests, body.branch, masks, body.masks)
    key = _key(request)
    exp = int(time.time()) + body.expires_in_s
    for rank, (task, m) in enumerate(zip(tasks, manifests), start=1):
        uid = m["upload_id"]
        task["data"].update({image: signed_path(key, uid, part, exp) for image, part in LS_IMAGE_PARTS.items()})
        task["data"].update({"batch_id": batch_id, "rank": rank, "task": m.get("task", "detect"),
                             "model_version": m["model"]["version"], "branch": body.branch})
    return {"batch_id": batch_id, "branch": body.branch, "class_names": names, "expires_at": exp,
            "tasks_kinds": sorted({m.get("task", "detect") for m in manifests}),
            "config": label_studio_config(names), "tasks": tasks}
