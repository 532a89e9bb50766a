"""Plain records exchanged between the HTTP layer and the metadata store."""

from __future__ import annotations

from dataclasses import dataclass, field

MODALITIES = ("visible", "infrared", "fusion")
ROLES = ("device", "data-team")


@dataclass
class PairRecord:
    """One mined pair as stored (the manifest is kept verbatim as JSON text)."""

    upload_id: str  # the manifest's content hash
    device_id: str  # manifest.device_id (checked against the uploading token)
    captured_at: float  # visible capture time, unix seconds
    received_at: float  # server time at ingest, unix seconds
    score: float  # per-pair inconsistency in bits
    model_version: str  # manifest.model.version
    task: str  # "detect" or "segment"
    width: int  # image width
    height: int  # image height
    files: dict[str, dict]  # part -> {"sha256", "bytes", "media_type"}
    phash_visible: int  # 64-bit dHash of the visible image (signed int64 for SQLite)
    phash_thermal: int  # 64-bit dHash of the thermal image (signed int64)
    manifest_json: str  # the manifest as received (canonical JSON)
    labelled: bool = False  # labels were imported for this pair

    def summary(self) -> dict:
        return {
            "upload_id": self.upload_id,
            "device_id": self.device_id,
            "captured_at": self.captured_at,
            "received_at": self.received_at,
            "score": self.score,
            "model_version": self.model_version,
            "task": self.task,
            "image_size": [self.width, self.height],
            "labelled": self.labelled,
        }


@dataclass
class PairFilters:
    """Filters of GET /api/v1/pairs and POST /api/v1/batches; None means 'any'."""

    device: str | None = None  # exact device id
    since: float | None = None  # captured_at >= since (unix seconds)
    until: float | None = None  # captured_at < until
    min_score: float | None = None  # score >= min_score
    max_score: float | None = None  # score <= max_score
    model_version: str | None = None  # exact model version
    labelled: bool | None = None  # label status


@dataclass
class TokenRecord:
    id: int  # row id, used by `msmine token revoke --id`
    name: str  # human name (device id for device tokens)
    role: str  # "device" or "data-team"
    device_id: str | None  # the device a device token may upload for
    created_at: float  # unix seconds
    revoked_at: float | None = None  # unix seconds, None while valid


@dataclass
class ModelRecord:
    version: str  # unique version string (wire.VERSION_RE)
    sha256: str  # hash of the model file
    bytes: int  # size of the model file
    metadata: dict = field(default_factory=dict)  # free-form JSON from the publisher
    published_at: float = 0.0  # unix seconds

    def public(self) -> dict:
        return {"version": self.version, "sha256": self.sha256, "bytes": self.bytes, "metadata": self.metadata,
                "published_at": self.published_at}
