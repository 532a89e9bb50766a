"""Ingest of one uploaded pair: validate, verify, hash, store files, then commit the row.

Raises :class:`~msmine.server.errors.InvalidUpload` or :class:`~msmine.server.errors.WrongDevice`
(the route maps them to 400 / 403); knows nothing of HTTP.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass

from msmine.errors import UserError
from msmine.masks import decode_mask_png
from msmine.phash import dhash
from msmine.server.blobs import BlobStore
from msmine.server.errors import InvalidUpload, WrongDevice
from msmine.server.metadata import MetadataStore
from msmine.server.records import PairRecord, TokenRecord
from msmine.wire import (
    FILE_PARTS,
    MASK_PARTS,
    WireError,
    mask_parts,
    parse_manifest,
    verify_file,
    verify_mask_file,
)

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    record: PairRecord  # the stored pair (the original one for a repeat)
    duplicate: bool  # True when the upload id was already stored


def selection_of(manifest: dict) -> tuple[str | None, float | None]:
    """(policy, score) the device selected the pair on (manifest schema 2), else (None, None).

    Read defensively: the wire format validates the field, but a manifest of schema 1 has none.
    """
    selection = manifest.get("selection")
    if not isinstance(selection, dict):
        return None, None
    policy, score = selection.get("policy"), selection.get("score")
    if not isinstance(policy, str) or isinstance(score, bool) or not isinstance(score, (int, float)):
        return None, None
    if not math.isfinite(score):
        return None, None
    return policy, float(score)


def check_masks(manifest: dict, files: dict[str, bytes]) -> dict[str, str]:
    """The masks the manifest declares, each checked (bytes, hash, 8-bit single channel, the image's
    size, class ids below the model's number of classes): branch -> sha256. A mask part the manifest
    does not declare, or a declared one missing, is refused."""
    declared = mask_parts(manifest)
    extra = sorted(set(files) & set(MASK_PARTS.values()) - set(declared.values()))
    if extra:
        raise InvalidUpload(f"{extra[0]}: sent without an entry in manifest.masks")
    width, height = manifest["image_size"]
    out = {}
    for branch, part in declared.items():
        if part not in files:
            raise InvalidUpload(f"{part}: declared in manifest.masks but not sent")
        try:
            verify_mask_file(manifest, branch, files[part])
            decode_mask_png(files[part], expected_size=(width, height), num_classes=len(manifest["class_names"]))
        except (WireError, UserError) as exc:
            raise InvalidUpload(f"{part}: {exc}" if not str(exc).startswith(part) else str(exc)) from None
        out[branch] = manifest["masks"][branch]["sha256"]
    return out


def ingest_pair(meta: MetadataStore, blobs: BlobStore, token: TokenRecord, manifest_bytes: bytes,
                files: dict[str, bytes]) -> IngestResult:
    """Store a new pair, or find the stored original of a repeat (``duplicate=True``).

    Nothing is written before every check passes; files are placed before the row commits, so a
    crash in between leaves only unreferenced blobs, which the startup sweep removes.
    """
    try:
        manifest = parse_manifest(manifest_bytes)
    except WireError as exc:
        raise InvalidUpload(str(exc)) from None
    except RecursionError:  # json.loads on pathologically nested input
        raise InvalidUpload("manifest is not valid JSON: nested too deeply") from None
    if manifest["device_id"] != token.device_id:
        raise WrongDevice(f"this token belongs to device {token.device_id!r}, "
                          f"not to manifest.device_id {manifest['device_id']!r}")
    existing = meta.get_pair(manifest["upload_id"])
    if existing is not None:
        return IngestResult(existing, duplicate=True)
    try:
        for part in FILE_PARTS:
            verify_file(manifest, part, files[part])
    except WireError as exc:
        raise InvalidUpload(str(exc)) from None
    masks = check_masks(manifest, files)
    hashes = {}
    for part in ("visible", "thermal"):
        try:
            hashes[part] = dhash(files[part])
        except ValueError:
            raise InvalidUpload(f"{part}: image cannot be decoded") from None
    policy, selection_score = selection_of(manifest)
    record = PairRecord(
        upload_id=manifest["upload_id"], device_id=manifest["device_id"],
        captured_at=float(manifest["captured_at"]["visible"]), received_at=time.time(),
        score=float(manifest["score"]), model_version=manifest["model"]["version"], task=manifest["task"],
        width=manifest["image_size"][0], height=manifest["image_size"][1],
        selection_policy=policy, selection_score=selection_score, files=manifest["files"],
        phash_visible=hashes["visible"], phash_thermal=hashes["thermal"],
        manifest_json=json.dumps(manifest, sort_keys=True, separators=(",", ":")), masks=masks,
    )
    for part in FILE_PARTS:
        blobs.put(files[part], manifest["files"][part]["sha256"])  # verified above
    for branch, sha in masks.items():
        blobs.put(files[MASK_PARTS[branch]], sha)  # verified and decoded above
    if not meta.insert_pair(record):
        log.info("upload %s arrived twice concurrently; kept the first", record.upload_id)
        return IngestResult(meta.get_pair(record.upload_id), duplicate=True)
    log.debug("stored pair %s from %s (score %.4f, rank %.4f)", record.upload_id, record.device_id, record.score,
              record.rank_score)
    return IngestResult(record, duplicate=False)
