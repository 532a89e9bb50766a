"""Ingest of one uploaded pair: validate, verify, hash, store files, then commit the row."""

from __future__ import annotations

import json
import logging
import time

from fastapi import HTTPException

from msmine.server.blobs import BlobStore
from msmine.server.metadata import MetadataStore
from msmine.server.phash import dhash
from msmine.server.records import PairRecord, TokenRecord
from msmine.wire import FILE_PARTS, WireError, parse_manifest, verify_file

log = logging.getLogger(__name__)


def _response(record: PairRecord, duplicate: bool) -> dict:
    return {"upload_id": record.upload_id, "device_id": record.device_id, "score": record.score,
            "received_at": record.received_at, "duplicate": duplicate}


def ingest_pair(meta: MetadataStore, blobs: BlobStore, token: TokenRecord, manifest_bytes: bytes,
                files: dict[str, bytes]) -> tuple[int, dict]:
    """Return (201, record) for a new pair or (200, original record) for a repeat; HTTPException on errors.

    Nothing is written before every check passes; files are placed before the row commits, so a
    crash in between leaves only unreferenced blobs, which the startup sweep removes.
    """
    try:
        manifest = parse_manifest(manifest_bytes)
    except WireError as exc:
        raise HTTPException(400, str(exc)) from None
    except RecursionError:  # json.loads on pathologically nested input (msmine.wire lets it through)
        raise HTTPException(400, "manifest is not valid JSON: nested too deeply") from None
    if manifest["device_id"] != token.device_id:
        raise HTTPException(403, f"this token belongs to device {token.device_id!r}, "
                                 f"not to manifest.device_id {manifest['device_id']!r}")
    existing = meta.get_pair(manifest["upload_id"])
    if existing is not None:
        return 200, _response(existing, duplicate=True)
    try:
        for part in FILE_PARTS:
            verify_file(manifest, part, files[part])
    except WireError as exc:
        raise HTTPException(400, str(exc)) from None
    hashes = {}
    for part in ("visible", "thermal"):
        try:
            hashes[part] = dhash(files[part])
        except ValueError:
            raise HTTPException(400, f"{part}: image cannot be decoded") from None
    record = PairRecord(
        upload_id=manifest["upload_id"], device_id=manifest["device_id"],
        captured_at=float(manifest["captured_at"]["visible"]), received_at=time.time(),
        score=float(manifest["score"]), model_version=manifest["model"]["version"], task=manifest["task"],
        width=manifest["image_size"][0], height=manifest["image_size"][1], files=manifest["files"],
        phash_visible=hashes["visible"], phash_thermal=hashes["thermal"],
        manifest_json=json.dumps(manifest, sort_keys=True, separators=(",", ":")),
    )
    for part in FILE_PARTS:
        blobs.put(files[part], manifest["files"][part]["sha256"])  # verified above
    if not meta.insert_pair(record):
        original = meta.get_pair(record.upload_id)
        log.info("upload %s arrived twice concurrently; kept the first", record.upload_id)
        return 200, _response(original, duplicate=True)
    log.debug("stored pair %s from %s (score %.4f)", record.upload_id, record.device_id, record.score)
    return 201, _response(record, duplicate=False)
