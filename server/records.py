"""Plain records exchanged between the HTTP layer and the metadata store (no HTTP shapes here: the
routes build the JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field

MODALITIES = ("visible", "infrared", "fusion")
ROLES = ("device", "data-team")


@dataclass
class PairSummary:
    """What a listing shows of one pair."""

    upload_id: str  # the manifest's content hash
    device_id: str  # manifest.device_id (checked against the uploading token)
    captured_at: float  # visible capture time, unix seconds
    received_at: float  # server time at ingest, unix seconds
    score: float  # per-pair inconsistency in bits (the paper's score)
    model_version: str  # manifest.model.version
    task: str  # "detect" or "segment"
    width: int  # image width
    height: int  # image height
    labelled: bool = False  # labels were imported for this pair
    selection_policy: str | None = None  # the policy the device selected the pair with (schema 2), else None
    selection_score: float | None = None  # the score it was selected on (schema 2), else None

    @property
    def rank_score(self) -> float:
        """What the server ranks on: the selection score when the device sent one, else the inconsistency."""
        return self.selection_score if self.selection_score is not None else self.score


@dataclass
class PairRecord(PairSummary):
    """One mined pair as stored (the manifest is kept verbatim as JSON text)."""

    files: dict[str, dict] = field(default_factory=dict)  # part -> {"sha256", "bytes", "media_type"}
    phash_visible: int = 0  # 64-bit dHash of the visible image (signed int64 for SQLite)
    phash_thermal: int = 0  # 64-bit dHash of the thermal image (signed int64)
    manifest_json: str = ""  # the manifest as received (canonical JSON)
    masks: dict[str, str] = field(default_factory=dict)  # branch -> sha256 of the device's class-id PNG


@dataclass
class PairPage:
    """One page of a filtered, ranked listing."""

    items: list[PairSummary]  # best rank score first
    total: int  # how many pairs match the filters in all
    next_after: str | None = None  # cursor of the page after this one (None on the last page)


def encode_cursor(rank_score: float, upload_id: str) -> str:
    """A keyset cursor: the position after the pair (rank_score, upload_id) in rank order."""
    return f"{float(rank_score)!r}:{upload_id}"


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Inverse of :func:`encode_cursor`; ValueError for anything else."""
    score, sep, upload_id = cursor.rpartition(":")
    value = float(score) if sep else float("nan")
    if not sep or value != value or value in (float("inf"), float("-inf")) or not upload_id.isalnum():
        raise ValueError(f"not a listing cursor: {cursor[:80]!r}")
    return value, upload_id


@dataclass
class PairFilters:
    """Filters of GET /api/v1/pairs and POST /api/v1/batches; None means 'any'."""

    device: str | None = None  # exact device id
    since: float | None = None  # captured_at >= since (unix seconds)
    until: float | None = None  # captured_at < until
    min_score: float | None = None  # rank score >= min_score
    max_score: float | None = None  # rank score <= max_score
    model_version: str | None = None  # exact model version
    labelled: bool | None = None  # label status
    task: str | None = None  # "detect" or "segment" (scores of different tasks are not comparable)


@dataclass
class BatchRecord:
    """A labelling batch: the pairs picked, in rank order, and how they were picked."""

    batch_id: str  # 16 hex digits
    created_at: float  # unix seconds
    k: int  # the budget asked for
    filters: dict  # the PairFilters fields used
    hamming: int  # near-duplicate threshold used
    upload_ids: list[str]  # the chosen pairs, best first


@dataclass
class StoreStats:
    pairs: int  # pairs stored
    labelled: int  # pairs with imported labels
    devices: list[str]  # distinct device ids
    model_versions: list[str]  # distinct model versions of the pairs
    model_tasks: dict[str, str] = field(default_factory=dict)  # model version -> task of its pairs
    latest_model_version: str | None = None  # the model version of the most recently received pair


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
