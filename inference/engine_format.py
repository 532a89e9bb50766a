"""The msmine TensorRT engine file: ``MAGIC | uint32 LE header length | JSON header | plan``.

The header carries the ONNX model's ``metadata_props`` (``"metadata"``), the optimisation profiles
over the batch axis (``"profiles"``: ``[[min, opt, max], ...]``), the build facts, and the plan's
length and sha256 (``"plan_bytes"``, ``"plan_sha256"``), so the metadata travels with the engine,
a truncated or corrupted file is refused with a clear error before TensorRT sees it, and the device
needs only that one file. Pure Python: written by ``msmine.export.tensorrt``, read by
:class:`msmine.inference.TensorRTRunner`.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from msmine.errors import UserError

MAGIC = b"MSMINE-TRT\x00\x01"
_HEADER_LEN = struct.Struct("<I")
MAX_HEADER_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Profile:
    """A TensorRT optimisation profile over the batch axis."""

    min_batch: int
    opt_batch: int
    max_batch: int

    def covers(self, batch: int) -> bool:
        return self.min_batch <= batch <= self.max_batch


def select_profile(profiles: list[Profile], batch: int) -> int:
    """Index of the profile that serves ``batch`` (the first, i.e. smallest, one that covers it)."""
    for index, profile in enumerate(profiles):
        if profile.covers(batch):
            return index
    largest = max((p.max_batch for p in profiles), default=0)
    raise UserError(f"batch {batch} exceeds the engine's largest profile ({largest})"
                    if batch > largest else f"batch {batch} is covered by no profile of the engine {profiles}")


def frame_engine(plan: bytes, header: dict) -> bytes:
    """MAGIC | header length | JSON header (plus the plan's length and sha256) | serialized plan."""
    plan = bytes(plan)
    header = {**header, "plan_bytes": len(plan), "plan_sha256": hashlib.sha256(plan).hexdigest()}
    blob = json.dumps(header, sort_keys=True).encode()
    return MAGIC + _HEADER_LEN.pack(len(blob)) + blob + plan


def unframe_engine(data: bytes, source: str = "engine") -> tuple[dict, bytes]:
    """-> (header, plan); UserError for a file that is not a framed msmine engine, is truncated or corrupt."""
    if not data.startswith(MAGIC):
        raise UserError(f"{source} is not an msmine TensorRT engine (bad magic); build one with "
                        "msmine.export.tensorrt.get_engine (bare TensorRT plans are not read)")
    offset = len(MAGIC)
    if len(data) < offset + _HEADER_LEN.size:
        raise UserError(f"{source} is truncated (no header length)")
    (length,) = _HEADER_LEN.unpack_from(data, offset)
    offset += _HEADER_LEN.size
    if length > MAX_HEADER_BYTES or len(data) < offset + length:
        raise UserError(f"{source} is truncated or corrupt (header of {length} bytes, file of {len(data)})")
    try:
        header = json.loads(data[offset:offset + length].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{source}: engine header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise UserError(f"{source}: engine header is not a JSON object")
    plan = data[offset + length:]
    if not plan:
        raise UserError(f"{source} holds no engine plan")
    if "plan_bytes" in header and len(plan) != header["plan_bytes"]:
        raise UserError(f"{source} is truncated or corrupt (plan of {len(plan)} bytes, header says "
                        f"{header['plan_bytes']})")
    if "plan_sha256" in header and hashlib.sha256(plan).hexdigest() != header["plan_sha256"]:
        raise UserError(f"{source} is corrupt (the plan's sha256 does not match its header)")
    metadata = header.get("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise UserError(f"{source}: engine header 'metadata' must be a JSON object of strings")
    return header, plan


def profiles_from_header(header: dict, source: str = "engine") -> list[Profile]:
    """The header's ``profiles`` (default: one profile for batch 1); UserError if malformed."""
    raw = header.get("profiles", [[1, 1, 1]])
    try:
        profiles = [Profile(*(int(v) for v in p)) for p in raw]
    except (TypeError, ValueError):
        raise UserError(f"{source}: engine header 'profiles' must be [[min, opt, max], ...], got {raw!r}") from None
    if not profiles or any(not 1 <= p.min_batch <= p.opt_batch <= p.max_batch for p in profiles):
        raise UserError(f"{source}: engine header 'profiles' must be non-empty with 1 <= min <= opt <= max, got {raw!r}")
    return profiles


def read_engine(path: str | Path) -> tuple[dict, bytes]:
    """(header, plan) of a framed engine file; UserError if it is missing or not a valid engine."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"engine file not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read engine {path}: {exc}") from None
    return unframe_engine(data, str(path))


def write_engine(path: str | Path, plan: bytes, header: dict) -> Path:
    """Write a framed engine atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(frame_engine(plan, header))
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path
