"""JSON shapes of the API, built from the store's plain records (the HTTP layer's half of the seam)."""

from __future__ import annotations

from msmine.server.ingest import IngestResult
from msmine.server.records import BatchRecord, ModelRecord, PairSummary, StoreStats


def selection_json(pair: PairSummary) -> dict | None:
    if pair.selection_score is None:
        return None
    return {"policy": pair.selection_policy, "score": pair.selection_score}


def pair_summary_json(pair: PairSummary) -> dict:
    return {
        "upload_id": pair.upload_id,
        "device_id": pair.device_id,
        "captured_at": pair.captured_at,
        "received_at": pair.received_at,
        "score": pair.score,  # the paper's inconsistency score
        "selection": selection_json(pair),  # {"policy", "score"} the device selected on (schema 2), else null
        "rank_score": pair.rank_score,  # what the listing is sorted by
        "model_version": pair.model_version,
        "task": pair.task,
        "image_size": [pair.width, pair.height],
        "labelled": pair.labelled,
    }


def ingest_json(result: IngestResult) -> dict:
    r = result.record
    return {"upload_id": r.upload_id, "device_id": r.device_id, "score": r.score, "selection": selection_json(r),
            "received_at": r.received_at, "duplicate": result.duplicate}


def model_json(model: ModelRecord) -> dict:
    return {"version": model.version, "sha256": model.sha256, "bytes": model.bytes, "metadata": model.metadata,
            "published_at": model.published_at}


def batch_json(batch: BatchRecord) -> dict:
    return {"batch_id": batch.batch_id, "created_at": batch.created_at, "k": batch.k, "filters": batch.filters,
            "hamming": batch.hamming, "upload_ids": batch.upload_ids}


def stats_json(stats: StoreStats) -> dict:
    return {"pairs": stats.pairs, "labelled": stats.labelled, "devices": stats.devices,
            "model_versions": stats.model_versions, "model_tasks": stats.model_tasks,
            "latest_model_version": stats.latest_model_version}
