"""Model registry: the data team publishes versions; devices ask for the latest and download it."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from msmine.server.auth import require_device_or_team, require_team
from msmine.server.context import ServerContext, get_context
from msmine.server.errors import DuplicateError
from msmine.server.limits import MAX_METADATA_BYTES, MODELS_PATH, body_limit, mib
from msmine.server.multipart_stream import read_multipart
from msmine.server.records import ModelRecord
from msmine.server.views import model_json
from msmine.wire import API_PREFIX, MODELS_LATEST_PATH, VERSION_RE

router = APIRouter(tags=["models"])

RESERVED_VERSIONS = {"latest"}
VERSION_PATTERN = VERSION_RE.pattern


def _model_or_404(ctx: ServerContext, version: str) -> ModelRecord:
    record = ctx.meta.get_model(version)
    if record is None:
        raise HTTPException(404, f"no model version {version!r}")
    return record


@router.post(
    MODELS_PATH, status_code=201, dependencies=[Depends(require_team)],
    summary="Publish a model version (data-team token): multipart file + version + metadata JSON",
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "version"],
        "properties": {"file": {"type": "string", "format": "binary", "description": "the ONNX model"},
                       "version": {"type": "string", "pattern": VERSION_PATTERN},
                       "metadata": {"type": "string", "description": "JSON object (optional)"}}}}}}},
    responses={200: {"description": "same version and hash already published"}, 409: {}},
)
async def publish_model(request: Request) -> Response:
    ctx = get_context(request)
    limit = mib(ctx.config.max_model_mb)
    parts = await read_multipart(
        request, max_body=body_limit(ctx.config, "POST", MODELS_PATH),
        part_limits={"file": limit, "version": 256, "metadata": MAX_METADATA_BYTES},
        required=("file", "version"), sinks={"file": ctx.blobs.writer},
    )
    writer = parts["file"].writer
    try:
        version = parts["version"].data.decode("utf-8", "replace").strip()
        if not VERSION_RE.match(version) or version in RESERVED_VERSIONS:
            raise HTTPException(400, f"version must match {VERSION_PATTERN} and not be 'latest', got {version!r}")
        metadata: dict = {}
        if "metadata" in parts and parts["metadata"].data.strip():
            try:
                metadata = json.loads(parts["metadata"].data)
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
                raise HTTPException(400, f"metadata is not valid JSON: {type(exc).__name__}") from None
            if not isinstance(metadata, dict):
                raise HTTPException(400, "metadata must be a JSON object")
        if parts["file"].size == 0:
            raise HTTPException(400, "model file is empty")
    except BaseException:
        writer.abort()
        raise
    existing = ctx.meta.get_model(version)
    if existing is None:
        sha, size = await run_in_threadpool(writer.commit)
        try:
            record = await run_in_threadpool(ctx.meta.add_model, ModelRecord(version, sha, size, metadata))
            return Response(json.dumps(model_json(record)), status_code=201, media_type="application/json")
        except DuplicateError:  # published concurrently; an unreferenced blob is swept at restart
            existing = ctx.meta.get_model(version)
    else:
        sha = writer.sha256()
        writer.abort()
    if existing.sha256 == sha:
        return Response(json.dumps(model_json(existing)), status_code=200, media_type="application/json")
    raise HTTPException(409, f"model version {version!r} is already published with a different file "
                             f"(sha256 {existing.sha256})")


@router.get(f"{API_PREFIX}/models", dependencies=[Depends(require_team)], summary="All published models, newest first")
def list_models(request: Request) -> list[dict]:
    return [model_json(m) for m in get_context(request).meta.list_models()]


@router.get(MODELS_LATEST_PATH, dependencies=[Depends(require_device_or_team)],
            summary="The latest published model: version, sha256, bytes, metadata (404 when none)")
def latest_model(request: Request) -> dict:
    record = get_context(request).meta.latest_model()
    if record is None:
        raise HTTPException(404, "no model is published yet")
    return model_json(record)


@router.get(f"{API_PREFIX}/models/{{version}}", dependencies=[Depends(require_device_or_team)],
            summary="One model version's record")
def get_model(request: Request, version: str = PathParam(..., pattern=VERSION_PATTERN)) -> dict:
    return model_json(_model_or_404(get_context(request), version))


@router.get(f"{API_PREFIX}/models/{{version}}/file", dependencies=[Depends(require_device_or_team)],
            response_class=FileResponse, summary="Download a model version's file",
            responses={200: {"content": {"application/octet-stream": {}}}})
def model_file(request: Request, version: str = PathParam(..., pattern=VERSION_PATTERN)) -> Response:
    ctx = get_context(request)
    record = ctx.meta.latest_model() if version == "latest" else ctx.meta.get_model(version)
    if record is None:
        raise HTTPException(404, f"no model version {version!r}")
    headers = {"ETag": f'"{record.sha256}"', "X-Content-SHA256": record.sha256}
    path = ctx.blobs.local_path(record.sha256)
    if path is not None:
        return FileResponse(path, media_type="application/octet-stream", filename=f"model-{record.version}.onnx",
                            headers=headers)
    return Response(ctx.blobs.read(record.sha256), media_type="application/octet-stream", headers=headers)
