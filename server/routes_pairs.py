"""Data-team endpoints: list/filter pairs, pair detail and files, labelling batches, export, label import."""

from __future__ import annotations

import json
import math
import os
import secrets
import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from msmine.errors import UserError
from msmine.palette import palette_json
from msmine.server.auth import require_team
from msmine.server.context import ServerContext, get_context
from msmine.server.errors import NotFoundError
from msmine.server.label_export import export_batch
from msmine.server.label_import import FORMATS as LABEL_FORMATS
from msmine.server.label_import import MODALITY_CHOICES, import_labels, parse_class_map
from msmine.server.limits import LABELS_PATH, body_limit, mib
from msmine.server.multipart_stream import read_multipart
from msmine.server.ranking import select_batch
from msmine.server.records import PairFilters, decode_cursor
from msmine.server.views import batch_json, pair_summary_json, stats_json
from msmine.wire import API_PREFIX

router = APIRouter(prefix=API_PREFIX, tags=["data team"], dependencies=[Depends(require_team)])

UPLOAD_ID = r"^[0-9a-f]{64}$"
BATCH_ID = r"^[0-9a-f]{16}$"
MAX_OFFSET = 1 << 53  # the largest integer a JSON client (JavaScript) holds exactly; far past any table


class FiltersBody(BaseModel):
    """Pair filters; omitted fields match everything."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    device: str | None = Field(None, description="exact device id")
    since: float | None = Field(None, description="captured_at >= since (unix seconds)")
    until: float | None = Field(None, description="captured_at < until (unix seconds)")
    min_score: float | None = Field(None, description="rank score >= min_score (the selection score, else the "
                                                      "inconsistency)")
    max_score: float | None = Field(None, description="rank score <= max_score")
    model_version: str | None = None
    labelled: bool | None = Field(None, description="true: labelled only, false: unlabelled only")
    task: Literal["detect", "segment"] | None = Field(None, description="pairs of one task only")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(..., ge=1, description="labelling budget: how many pairs to pick")
    filters: FiltersBody = Field(default_factory=FiltersBody)
    hamming: int | None = Field(None, ge=-1, le=128,
                                description="near-duplicate threshold in bits (of 128); -1 keeps duplicates; "
                                            "default from the server config")


def filters_query(
    device: str | None = Query(None, description="exact device id"),
    since: float | None = Query(None, description="captured_at >= since (unix seconds)"),
    until: float | None = Query(None, description="captured_at < until (unix seconds)"),
    min_score: float | None = Query(None, description="rank score >= min_score (the selection score the device "
                                                      "sent, else the inconsistency score)"),
    max_score: float | None = Query(None, description="rank score <= max_score"),
    model_version: str | None = Query(None),
    labelled: bool | None = Query(None, description="true: labelled only, false: unlabelled only"),
    task: Literal["detect", "segment"] | None = Query(None, description="pairs of one task only (scores of "
                                                                        "different tasks are not comparable)"),
) -> PairFilters:
    for name, value in (("since", since), ("until", until), ("min_score", min_score), ("max_score", max_score)):
        if value is not None and not math.isfinite(value):
            raise HTTPException(422, f"{name} must be a finite number, got {value}")
    return PairFilters(device=device, since=since, until=until, min_score=min_score, max_score=max_score,
                       model_version=model_version, labelled=labelled, task=task)


def _pair_or_404(ctx: ServerContext, upload_id: str):
    record = ctx.meta.get_pair(upload_id)
    if record is None:
        raise HTTPException(404, f"no pair with upload id {upload_id}")
    return record


@router.get("/pairs", summary="List pairs by rank score (the selection score, else the inconsistency; highest "
                             "first), filtered and paged",
            responses={422: {"description": "offset or a filter out of range"}})
def list_pairs(request: Request, filters: PairFilters = Depends(filters_query),
               limit: int = Query(50, ge=1), offset: int = Query(0, ge=0),
               after: str | None = Query(None, max_length=200,
                                         description="cursor from a previous page's `next`: the page after it "
                                                     "(keyset paging: as fast deep in the listing as at its "
                                                     "start, and stable while pairs arrive)")) -> dict:
    ctx = get_context(request)
    if limit > ctx.config.max_page_size:
        raise HTTPException(400, f"limit must be at most {ctx.config.max_page_size}")
    if offset > MAX_OFFSET:
        raise HTTPException(422, f"offset must be an integer in [0, {MAX_OFFSET}], got {offset}")
    cursor = None
    if after is not None:
        if offset:
            raise HTTPException(422, "give either offset or after, not both")
        try:
            cursor = decode_cursor(after)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
    page = ctx.meta.list_pairs(filters, limit=limit, offset=offset, after=cursor)
    return {"items": [pair_summary_json(p) for p in page.items], "total": page.total, "limit": limit,
            "offset": offset, "next": page.next_after}


@router.get("/stats", summary="Counts, devices and model versions (for filter menus; the gallery ranks within "
                             "the latest model version by default)")
def stats(request: Request) -> dict:
    return stats_json(get_context(request).meta.stats())


@router.get("/palette", summary="The colour table of the gallery and the reports (branches, labels, classes)")
def palette() -> dict:
    return palette_json()


@router.get("/pairs/{upload_id}", summary="One pair: metadata, predictions of every branch, labels")
def get_pair(request: Request, upload_id: str = PathParam(..., pattern=UPLOAD_ID)) -> dict:
    ctx = get_context(request)
    record = _pair_or_404(ctx, upload_id)
    manifest = json.loads(record.manifest_json)
    return {**pair_summary_json(record), "class_names": manifest["class_names"], "predictions": manifest["predictions"],
            "files": manifest["files"], "captured_at_pair": manifest["captured_at"],
            "model": manifest["model"], "location": manifest.get("location"),
            "labels": ctx.meta.get_labels(upload_id),
            "masks": record.masks,  # branch -> sha256 of the predicted class-id PNG (GET .../masks/{branch})
            "label_masks": ctx.meta.get_label_masks(upload_id)}  # modality -> sha256 (GET .../labels/{m}/mask)


def _png_blob(ctx: ServerContext, sha256: str) -> Response:
    headers = {"ETag": f'"{sha256}"', "Cache-Control": "private, max-age=31536000, immutable"}
    path = ctx.blobs.local_path(sha256)
    if path is not None:
        return FileResponse(path, media_type="image/png", headers=headers)
    return Response(ctx.blobs.read(sha256), media_type="image/png", headers=headers)


@router.get("/pairs/{upload_id}/masks/{branch}",
            summary="A branch's predicted segmentation mask: 8-bit greyscale PNG, pixel value = class id, sized to "
                    "the image (segmentation models only)",
            response_class=Response, responses={200: {"content": {"image/png": {}}}, 404: {}})
def get_pair_mask(request: Request, upload_id: str = PathParam(..., pattern=UPLOAD_ID),
                  branch: Literal["fused", "visible", "thermal"] = PathParam(...)) -> Response:
    ctx = get_context(request)
    sha = _pair_or_404(ctx, upload_id).masks.get(branch)
    if sha is None:
        raise HTTPException(404, f"pair {upload_id} has no {branch} mask")
    return _png_blob(ctx, sha)


@router.get("/pairs/{upload_id}/labels/{modality}/mask",
            summary="An imported mask label: 8-bit greyscale PNG, pixel value = class id, sized to the image",
            response_class=Response, responses={200: {"content": {"image/png": {}}}, 404: {}})
def get_label_mask(request: Request, upload_id: str = PathParam(..., pattern=UPLOAD_ID),
                   modality: Literal["visible", "infrared", "fusion"] = PathParam(...)) -> Response:
    ctx = get_context(request)
    _pair_or_404(ctx, upload_id)
    sha = ctx.meta.get_label_masks(upload_id).get(modality)
    if sha is None:
        raise HTTPException(404, f"pair {upload_id} has no imported {modality} mask")
    return _png_blob(ctx, sha)


@router.get("/pairs/{upload_id}/files/{part}", summary="A pair's image (visible, thermal or heatmap)",
            response_class=Response, responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}})
def get_pair_file(request: Request, upload_id: str = PathParam(..., pattern=UPLOAD_ID),
                  part: Literal["visible", "thermal", "heatmap"] = PathParam(...)) -> Response:
    ctx = get_context(request)
    info = _pair_or_404(ctx, upload_id).files[part]
    headers = {"ETag": f'"{info["sha256"]}"', "Cache-Control": "private, max-age=31536000, immutable"}
    path = ctx.blobs.local_path(info["sha256"])
    if path is not None:
        return FileResponse(path, media_type=info["media_type"], headers=headers)
    return Response(ctx.blobs.read(info["sha256"]), media_type=info["media_type"], headers=headers)


@router.post("/batches", status_code=201,
             summary="Pick the top K pairs across the fleet for labelling, removing near-duplicates")
def create_batch(request: Request, body: BatchRequest) -> dict:
    ctx = get_context(request)
    if body.k > ctx.config.max_batch_k:
        raise HTTPException(400, f"k must be at most {ctx.config.max_batch_k}")
    filters = PairFilters(**body.filters.model_dump())
    hamming = ctx.config.dedup_hamming if body.hamming is None else body.hamming
    selection = select_batch(ctx.meta, filters, body.k, hamming)
    batch_id = secrets.token_hex(8)
    ctx.meta.create_batch(batch_id, body.k, filters, hamming, selection.upload_ids)
    return {"batch_id": batch_id, "upload_ids": selection.upload_ids, "k": body.k, "hamming": hamming,
            "skipped_duplicates": selection.skipped_duplicates, "examined": selection.examined,
            "export_url": f"{API_PREFIX}/batches/{batch_id}/export"}


@router.get("/batches/{batch_id}", summary="A labelling batch: its pairs in rank order")
def get_batch(request: Request, batch_id: str = PathParam(..., pattern=BATCH_ID)) -> dict:
    batch = get_context(request).meta.get_batch(batch_id)
    if batch is None:
        raise HTTPException(404, f"no batch {batch_id}")
    return batch_json(batch)


@router.get("/batches/{batch_id}/export", response_class=FileResponse,
            summary="Zip of images + COCO JSON (a branch's boxes or masks as pre-annotations) + Label Studio "
                    "tasks and labelling configs",
            responses={200: {"content": {"application/zip": {}}}})
def export(request: Request, batch_id: str = PathParam(..., pattern=BATCH_ID),
           branch: Literal["fused", "visible", "thermal"] = Query(
               "fused", description="whose predictions (boxes or masks) become the pre-annotations")) -> FileResponse:
    ctx = get_context(request)
    batch = ctx.meta.get_batch(batch_id)
    if batch is None:
        raise HTTPException(404, f"no batch {batch_id}")
    fd, name = tempfile.mkstemp(dir=ctx.root / "tmp", prefix="export-", suffix=".zip")
    os.close(fd)
    out = Path(name)
    try:
        export_batch(ctx.meta, ctx.blobs, batch, out, branch=branch)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return FileResponse(out, media_type="application/zip", filename=f"msmine-batch-{batch_id}.zip",
                        background=BackgroundTask(out.unlink, missing_ok=True))


@router.post("/labels", summary="Import labels (COCO / CVAT COCO 1.0, Label Studio JSON, YOLO .txt, PNG masks; "
                                 "a file or a zip) and mark pairs labelled",
             openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["file"],
                 "properties": {"file": {"type": "string", "format": "binary"}}}}}}})
async def import_labels_endpoint(
    request: Request,
    format: Literal[LABEL_FORMATS] = Query("auto"),
    modality: Literal[MODALITY_CHOICES] = Query("auto", description="visible | infrared | fusion | all | auto "
                                                                    "(from the file path, else all)"),
    class_map: str = Query("", description="file class names onto the pairs' by name, e.g. pedestrian=person "
                                           "(same names match unasked)", max_length=2000),
) -> dict:
    ctx = get_context(request)
    try:
        mapping = parse_class_map(class_map)
    except UserError as exc:
        raise HTTPException(400, str(exc)) from None
    limit = mib(ctx.config.max_labels_mb)
    parts = await read_multipart(request, max_body=body_limit(ctx.config, "POST", LABELS_PATH),
                                 part_limits={"file": limit}, required=("file",))
    raw = bytes(parts["file"].data)
    try:
        result = await run_in_threadpool(import_labels, raw, ctx.meta, blobs=ctx.blobs, fmt=format, modality=modality,
                                         source=parts["file"].filename or "upload", class_map=mapping)
    except NotFoundError as exc:  # a pair removed between the match and the write
        raise HTTPException(404, str(exc)) from None
    if not result.label_sets:
        raise HTTPException(400, f"no label matched a stored pair (file names must be <upload_id>.<ext>); "
                                 f"unmatched: {result.unmatched[:5]}")
    return {"pairs_labelled": result.pairs, "label_sets": result.label_sets, "masks": len(result.masks),
            "unmatched": result.unmatched, "skipped": result.skipped}
