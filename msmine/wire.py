"""The wire format between the device (``edge_runtime``) and the collection server (``server``).

Dependency-free (standard library only) so both sides import the same definitions.

Upload of one mined pair: ``POST /api/v1/uploads`` as ``multipart/form-data`` with four parts,
``manifest`` (JSON, below), ``visible``, ``thermal`` and ``heatmap`` (image files), and the header
``Authorization: Bearer <device token>``.

Manifest (schema 2), every field required unless marked optional, no other field allowed::

    {
      "schema": 2,
      "upload_id": "<sha256 hex of the canonical manifest without upload_id>",
      "device_id": "pole-17",                      # [A-Za-z0-9._-]{1,64}
      "captured_at": {"visible": 1764131234.51, "thermal": 1764131234.49},   # unix seconds
      "model": {"version": "v3", "hash": "<sha256 hex of the model file>"},
      "task": "detect",                            # "detect" or "segment"
      "score": 0.4312,                             # per-pair inconsistency in bits, [0, 1] (the paper's score)
      "selection": {"policy": "entropy", "score": 0.2391},   # what the device selected the pair on
      "image_size": [640, 480],                    # width, height of visible and thermal
      "class_names": ["person", "bicycle", "car"],
      "files": {"visible": {"sha256": "...", "bytes": 123, "media_type": "image/png"},
                "thermal": {...}, "heatmap": {...}},
      "predictions": {"fused": [DET, ...], "visible": [...], "thermal": [...]},
      "location": {"lat": 48.1, "lon": -1.6},      # optional, may be null
      "masks": {"fused": MASK, "visible": MASK, "thermal": MASK}   # optional (task "segment" only)
    }

    MASK = {"part": "mask_fused", "sha256": "...", "bytes": 5123, "width": 640, "height": 480}

    DET = {"box": [x1, y1, x2, y2], "score": 0.87, "class_id": 0}   # box normalised to [0, 1]

``masks`` (optional in schemas 1 and 2, segmentation models only): each branch's predicted mask as
an 8-bit single-channel PNG of class ids (pixel value = class id, ``< len(class_names)``), sized to
the camera image (``width``, ``height`` equal ``image_size``), sent as the extra multipart part
``mask_<branch>`` (:data:`MASK_PARTS`; ``part`` names it), at most :data:`MAX_MASK_BYTES` each.
:func:`verify_mask_file` checks the bytes, hash and PNG header size; decoding and class ids are
checked by :func:`msmine.masks.decode_mask_png`. Manifests without ``masks`` are unchanged.

``selection`` (schema 2): the selection policy the device ran (``[a-z0-9_.-]{1,64}``, e.g.
``inconsistency``, ``entropy``, ``combined``, ``random``) and the finite score it kept the pair on;
the device's spool evicts and uploads by it and the server ranks by it. Schema 1 manifests (no
``selection`` field) are still accepted; :func:`selection_of` gives their selection as
``{"policy": "inconsistency", "score": <score>}``.

Because the manifest carries the SHA-256 of every file, the upload id is a content hash of the
whole pair: a retry after a lost response sends the same id, and the server answers with the
original record instead of creating a second one (200 + ``"duplicate": true``; a first upload
gets 201). A server under load answers 429 with ``Retry-After`` (seconds).

Identity: ``GET /api/v1/whoami`` -> ``{"role": "device", "device_id": "pole-17", "name": ...}``, the
token's own record (a device checks its ``--device-id`` against it at start).

Model registry: ``GET /api/v1/models/latest`` -> ``{"version", "sha256", "bytes", "metadata"}``
(404 when none is published); ``GET /api/v1/models/{version}/file`` -> the ONNX bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from typing import Any

SCHEMA_VERSION = 2  # what build_manifest writes when a selection is given
SCHEMA_VERSIONS = (1, 2)  # what validate_manifest accepts (1: before the selection field)
DEFAULT_POLICY = "inconsistency"  # the selection of a schema-1 manifest: its paper score
API_PREFIX = "/api/v1"
UPLOAD_PATH = f"{API_PREFIX}/uploads"
MODELS_LATEST_PATH = f"{API_PREFIX}/models/latest"
MODEL_FILE_PATH = f"{API_PREFIX}/models/{{version}}/file"
WHOAMI_PATH = f"{API_PREFIX}/whoami"  # GET -> {"role", "device_id", "name"} of the bearer token

MANIFEST_PART = "manifest"
FILE_PARTS = ("visible", "thermal", "heatmap")
BRANCHES = ("fused", "visible", "thermal")
TASKS = ("detect", "segment")
MEDIA_TYPES = ("image/png", "image/jpeg")
MASK_PARTS = {branch: f"mask_{branch}" for branch in BRANCHES}  # branch -> multipart part of its mask PNG

MAX_MANIFEST_BYTES = 1 << 20  # 1 MiB
MAX_FILE_BYTES = 32 << 20  # 32 MiB per image
MAX_MASK_BYTES = 8 << 20  # 8 MiB per mask PNG (a 640 x 480 class-id PNG is a few KiB)
MAX_DETECTIONS = 1000  # per branch
MAX_CLASSES = 1000

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")
POLICY_RE = re.compile(r"^[a-z0-9_.-]{1,64}$")

_REQUIRED = {
    "schema", "upload_id", "device_id", "captured_at", "model", "task", "score",
    "image_size", "class_names", "files", "predictions",
}
_OPTIONAL = {"location", "masks"}
_REQUIRED_BY_SCHEMA = {1: _REQUIRED, 2: _REQUIRED | {"selection"}}


class WireError(ValueError):
    """A manifest or upload that does not follow the wire format; the message says what is wrong."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON encoding (sorted keys, no spaces), the input of the upload id."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def compute_upload_id(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "upload_id"}
    return sha256_hex(canonical_json(body))


def media_type_of(data: bytes) -> str:
    """Sniff PNG/JPEG from the magic bytes (never trust a client-supplied name or type)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    raise WireError("file is neither PNG nor JPEG")


def build_manifest(
    *,
    device_id: str,
    captured_at: dict[str, float],
    model_version: str,
    model_hash: str,
    task: str,
    score: float,
    image_size: tuple[int, int],
    class_names: list[str],
    files: dict[str, bytes],
    predictions: dict[str, list[dict]],
    location: dict[str, float] | None = None,
    selection: dict[str, Any] | None = None,
    masks: dict[str, bytes] | None = None,
) -> dict:
    """Assemble and validate a manifest for the given encoded files; sets ``upload_id``.

    With ``selection`` (``{"policy": name, "score": value}``) the manifest is schema 2; without, it
    is a schema-1 manifest (no selection field), as older devices send. ``masks``: branch -> class-id
    PNG bytes (sent as the parts :func:`mask_files` names).
    """
    manifest: dict[str, Any] = {
        "schema": SCHEMA_VERSION if selection is not None else 1,
        "device_id": device_id,
        "captured_at": {k: float(v) for k, v in captured_at.items()},
        "model": {"version": model_version, "hash": model_hash},
        "task": task,
        "score": float(score),
        "image_size": [int(image_size[0]), int(image_size[1])],
        "class_names": list(class_names),
        "files": {
            part: {"sha256": sha256_hex(data), "bytes": len(data), "media_type": media_type_of(data)}
            for part, data in files.items()
        },
        "predictions": {
            branch: [
                {"box": [float(c) for c in d["box"]], "score": float(d["score"]), "class_id": int(d["class_id"])}
                for d in dets
            ]
            for branch, dets in predictions.items()
        },
    }
    if selection is not None:
        manifest["selection"] = {"policy": str(selection["policy"]), "score": float(selection["score"])}
    if location is not None:
        manifest["location"] = {k: float(v) for k, v in location.items()}
    if masks:
        manifest["masks"] = {}
        for branch, data in masks.items():
            width, height = png_size(data)
            manifest["masks"][branch] = {"part": MASK_PARTS.get(branch, f"mask_{branch}"), "sha256": sha256_hex(data),
                                         "bytes": len(data), "width": width, "height": height}
    manifest["upload_id"] = compute_upload_id(manifest)
    return validate_manifest(manifest)


def png_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from a PNG's IHDR header (no decoding); WireError when it is not a PNG."""
    if len(data) < 24 or not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        raise WireError("mask is not a PNG file")
    return struct.unpack(">II", data[16:24])


def mask_parts(manifest: dict) -> dict[str, str]:
    """branch -> multipart part name of each mask the manifest declares ({} without masks)."""
    return {branch: info["part"] for branch, info in (manifest.get("masks") or {}).items()}


def upload_parts(manifest: dict) -> tuple[str, ...]:
    """Every file part an upload of this manifest carries: the images, then the masks it declares."""
    return (*FILE_PARTS, *mask_parts(manifest).values())


def mask_files(masks: dict[str, bytes]) -> dict[str, bytes]:
    """branch -> PNG bytes  ->  multipart part name -> PNG bytes (what travels beside the images)."""
    return {MASK_PARTS[branch]: data for branch, data in masks.items()}


def _validate_masks(masks: Any, size: list[int], task: str) -> None:
    if not isinstance(masks, dict):
        _fail("manifest.masks must be a JSON object (branch -> mask)")
    if masks and task != "segment":
        _fail(f"manifest.masks is only for task 'segment', not {task!r}")
    unknown = set(masks) - set(BRANCHES)
    if unknown:
        _fail(f"manifest.masks has unknown branch(es): {', '.join(sorted(unknown))}")
    for branch, info in masks.items():
        what = f"manifest.masks.{branch}"
        _exact_keys(info, {"part", "sha256", "bytes", "width", "height"}, set(), what)
        if info["part"] != MASK_PARTS[branch]:
            _fail(f"{what}.part must be {MASK_PARTS[branch]!r}, got {info['part']!r}")
        if not isinstance(info["sha256"], str) or not SHA256_RE.match(info["sha256"]):
            _fail(f"{what}.sha256 must be a lowercase sha256 hex string")
        b = info["bytes"]
        if isinstance(b, bool) or not isinstance(b, int) or not 0 < b <= MAX_MASK_BYTES:
            _fail(f"{what}.bytes must be an integer in (0, {MAX_MASK_BYTES}]")
        w, h = info["width"], info["height"]
        if [w, h] != size or isinstance(w, bool) or isinstance(h, bool):
            _fail(f"{what} is {w}x{h}, the image is {size[0]}x{size[1]} (a mask must be sized to the camera image)")


def _fail(msg: str) -> None:
    raise WireError(msg)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _exact_keys(obj: Any, required: set, optional: set, what: str) -> None:
    if not isinstance(obj, dict):
        _fail(f"{what} must be a JSON object, got {type(obj).__name__}")
    missing = required - set(obj)
    if missing:
        _fail(f"{what} is missing field(s): {', '.join(sorted(missing))}")
    unknown = set(obj) - required - optional
    if unknown:
        _fail(f"{what} has unknown field(s): {', '.join(sorted(unknown))}")


def _validate_detection(det: Any, what: str, n_classes: int) -> None:
    _exact_keys(det, {"box", "score", "class_id"}, set(), what)
    box = det["box"]
    if not isinstance(box, list) or len(box) != 4:
        _fail(f"{what}.box must be a list of 4 numbers [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (_number(c, f"{what}.box") for c in box)
    if not (0.0 <= x1 <= x2 <= 1.0 and 0.0 <= y1 <= y2 <= 1.0):
        _fail(f"{what}.box must be normalised with 0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1, got {box}")
    score = _number(det["score"], f"{what}.score")
    if not 0.0 <= score <= 1.0:
        _fail(f"{what}.score must lie in [0, 1], got {score}")
    cid = det["class_id"]
    if isinstance(cid, bool) or not isinstance(cid, int) or not 0 <= cid < n_classes:
        _fail(f"{what}.class_id must be an integer in [0, {n_classes}), got {cid!r}")


def _validate_selection(sel: Any) -> None:
    _exact_keys(sel, {"policy", "score"}, set(), "manifest.selection")
    if not isinstance(sel["policy"], str) or not POLICY_RE.match(sel["policy"]):
        _fail(f"manifest.selection.policy must match {POLICY_RE.pattern}, got {sel['policy']!r}")
    _number(sel["score"], "manifest.selection.score")


def selection_of(manifest: dict) -> dict[str, Any]:
    """What the pair was selected on: ``{"policy", "score"}`` (schema 1: its inconsistency score)."""
    sel = manifest.get("selection")
    if sel is None:
        return {"policy": DEFAULT_POLICY, "score": float(manifest["score"])}
    return {"policy": sel["policy"], "score": float(sel["score"])}


def selection_score(manifest: dict) -> float:
    """The score a pair is evicted, uploaded and ranked on (schema 1: its inconsistency score)."""
    return selection_of(manifest)["score"]


def validate_manifest(manifest: Any) -> dict:
    """Check every field of a manifest; return it unchanged or raise :class:`WireError`."""
    if not isinstance(manifest, dict):
        _fail(f"manifest must be a JSON object, got {type(manifest).__name__}")
    schema = manifest.get("schema")
    if isinstance(schema, bool) or schema not in SCHEMA_VERSIONS:
        _fail(f"manifest.schema must be one of {list(SCHEMA_VERSIONS)}, got {schema!r}")
    _exact_keys(manifest, _REQUIRED_BY_SCHEMA[schema], _OPTIONAL, "manifest")
    if not isinstance(manifest["upload_id"], str) or not SHA256_RE.match(manifest["upload_id"]):
        _fail("manifest.upload_id must be a lowercase sha256 hex string")
    if not isinstance(manifest["device_id"], str) or not DEVICE_ID_RE.match(manifest["device_id"]):
        _fail(f"manifest.device_id must match {DEVICE_ID_RE.pattern}, got {manifest['device_id']!r}")
    _exact_keys(manifest["captured_at"], {"visible", "thermal"}, set(), "manifest.captured_at")
    for k, v in manifest["captured_at"].items():
        if _number(v, f"manifest.captured_at.{k}") < 0:
            _fail(f"manifest.captured_at.{k} must be >= 0")
    _exact_keys(manifest["model"], {"version", "hash"}, set(), "manifest.model")
    if not isinstance(manifest["model"]["version"], str) or not VERSION_RE.match(manifest["model"]["version"]):
        _fail(f"manifest.model.version must match {VERSION_RE.pattern}")
    if not isinstance(manifest["model"]["hash"], str) or not SHA256_RE.match(manifest["model"]["hash"]):
        _fail("manifest.model.hash must be a lowercase sha256 hex string")
    if manifest["task"] not in TASKS:
        _fail(f"manifest.task must be one of {list(TASKS)}, got {manifest['task']!r}")
    score = _number(manifest["score"], "manifest.score")
    if not 0.0 <= score <= 1.0:
        _fail(f"manifest.score must lie in [0, 1], got {score}")
    if schema >= 2:
        _validate_selection(manifest["selection"])
    size = manifest["image_size"]
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 16384 for s in size)
    ):
        _fail(f"manifest.image_size must be [width, height] with positive integers, got {size!r}")
    names = manifest["class_names"]
    if not isinstance(names, list) or not names or len(names) > MAX_CLASSES or not all(isinstance(n, str) for n in names):
        _fail("manifest.class_names must be a non-empty list of strings")
    _exact_keys(manifest["files"], set(FILE_PARTS), set(), "manifest.files")
    for part, info in manifest["files"].items():
        _exact_keys(info, {"sha256", "bytes", "media_type"}, set(), f"manifest.files.{part}")
        if not isinstance(info["sha256"], str) or not SHA256_RE.match(info["sha256"]):
            _fail(f"manifest.files.{part}.sha256 must be a lowercase sha256 hex string")
        b = info["bytes"]
        if isinstance(b, bool) or not isinstance(b, int) or not 0 < b <= MAX_FILE_BYTES:
            _fail(f"manifest.files.{part}.bytes must be an integer in (0, {MAX_FILE_BYTES}]")
        if info["media_type"] not in MEDIA_TYPES:
            _fail(f"manifest.files.{part}.media_type must be one of {list(MEDIA_TYPES)}")
    preds = manifest["predictions"]
    if not isinstance(preds, dict):
        _fail("manifest.predictions must be a JSON object")
    unknown = set(preds) - set(BRANCHES)
    if unknown:
        _fail(f"manifest.predictions has unknown branch(es): {', '.join(sorted(unknown))}")
    for branch, dets in preds.items():
        if not isinstance(dets, list) or len(dets) > MAX_DETECTIONS:
            _fail(f"manifest.predictions.{branch} must be a list of at most {MAX_DETECTIONS} detections")
        for i, det in enumerate(dets):
            _validate_detection(det, f"manifest.predictions.{branch}[{i}]", len(names))
    if "masks" in manifest:
        _validate_masks(manifest["masks"], size, manifest["task"])
    if manifest.get("location") is not None:
        _exact_keys(manifest["location"], {"lat", "lon"}, set(), "manifest.location")
        lat = _number(manifest["location"]["lat"], "manifest.location.lat")
        lon = _number(manifest["location"]["lon"], "manifest.location.lon")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            _fail("manifest.location must have -90 <= lat <= 90 and -180 <= lon <= 180")
    expected = compute_upload_id(manifest)
    if manifest["upload_id"] != expected:
        _fail(f"manifest.upload_id does not match the manifest's content hash (expected {expected})")
    return manifest


def parse_manifest(raw: bytes) -> dict:
    """Decode and validate manifest bytes from an upload."""
    if len(raw) > MAX_MANIFEST_BYTES:
        _fail(f"manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(f"manifest is not valid JSON: {exc}")
    except RecursionError:
        _fail("manifest is not valid JSON: nested too deeply")
    return validate_manifest(obj)


def verify_file(manifest: dict, part: str, data: bytes) -> None:
    """Check one uploaded file against the manifest's size, hash and media type."""
    info = manifest["files"][part]
    if len(data) != info["bytes"]:
        _fail(f"{part}: got {len(data)} bytes, manifest says {info['bytes']} (truncated upload?)")
    digest = sha256_hex(data)
    if digest != info["sha256"]:
        _fail(f"{part}: content hash {digest} does not match manifest sha256 {info['sha256']}")
    if media_type_of(data) != info["media_type"]:
        _fail(f"{part}: content is not {info['media_type']}")


def verify_mask_file(manifest: dict, branch: str, data: bytes) -> None:
    """Check one uploaded mask PNG against the manifest's size, hash and width x height (header only;
    :func:`msmine.masks.decode_mask_png` decodes it and checks the class ids)."""
    info = manifest["masks"][branch]
    part = info["part"]
    if len(data) != info["bytes"]:
        _fail(f"{part}: got {len(data)} bytes, manifest says {info['bytes']} (truncated upload?)")
    digest = sha256_hex(data)
    if digest != info["sha256"]:
        _fail(f"{part}: content hash {digest} does not match manifest sha256 {info['sha256']}")
    try:
        width, height = png_size(data)
    except WireError:
        _fail(f"{part}: content is not a PNG")
    if (width, height) != (info["width"], info["height"]):
        _fail(f"{part}: the PNG is {width}x{height}, manifest says {info['width']}x{info['height']}")
