"""The selection score (manifest schema 2) on the server, and the storage seam (issue 10 items 3 and 6):
both schema versions accepted; stored, shown and ranked on (falling back to the inconsistency score);
an old database gains the columns in place; the store raises its own exceptions, returns records."""

from __future__ import annotations

import ast
import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from msmine.server.errors import DuplicateError, InvalidUpload, NotFoundError, WrongDevice
from msmine.server.ingest import ingest_pair
from msmine.server.metadata import SqliteMetadataStore
from msmine.server.records import ModelRecord, PairFilters, PairPage, PairRecord, PairSummary
from msmine.server.tokens import hash_token
from tests.server.upload_helpers import manifest_bytes, manifest_for, synthetic_files

SERVER_DIR = Path(__file__).resolve().parents[2] / "server"


def upload(served, rng, score: float, selection: dict | None = None):
    files = synthetic_files(rng)
    manifest = manifest_for(files, score=score, selection=selection)
    resp = served.upload(manifest, files)
    assert resp.status_code == 201, resp.text
    return manifest


def test_both_schemas_accepted_and_ranked_on_the_selection_score(served, rng):
    old = upload(served, rng, score=0.9)  # schema 1: ranks on its inconsistency 0.9
    low = upload(served, rng, score=0.95, selection={"policy": "entropy", "score": 0.2})
    high = upload(served, rng, score=0.1, selection={"policy": "entropy", "score": 1.7})
    assert old["schema"] == 1 and low["schema"] == 2
    listed = served.client.get("/api/v1/pairs", headers=served.auth(served.team)).json()["items"]
    assert [i["upload_id"] for i in listed] == [high["upload_id"], old["upload_id"], low["upload_id"]]
    by_id = {i["upload_id"]: i for i in listed}
    assert by_id[high["upload_id"]]["selection"] == {"policy": "entropy", "score": 1.7}
    assert by_id[high["upload_id"]]["score"] == pytest.approx(0.1)  # the paper score, beside it
    assert by_id[high["upload_id"]]["rank_score"] == pytest.approx(1.7)
    assert by_id[old["upload_id"]]["selection"] is None
    assert by_id[old["upload_id"]]["rank_score"] == pytest.approx(0.9)
    detail = served.client.get(f"/api/v1/pairs/{low['upload_id']}", headers=served.auth(served.team)).json()
    assert detail["selection"] == {"policy": "entropy", "score": 0.2} and detail["score"] == pytest.approx(0.95)
    # filters and batches use the rank score too
    band = served.client.get("/api/v1/pairs", params={"min_score": 0.5}, headers=served.auth(served.team)).json()
    assert {i["upload_id"] for i in band["items"]} == {high["upload_id"], old["upload_id"]}
    batch = served.client.post("/api/v1/batches", json={"k": 1, "hamming": -1},
                               headers=served.auth(served.team)).json()
    assert batch["upload_ids"] == [high["upload_id"]]


OLD_PAIRS = """CREATE TABLE pairs (
    upload_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, captured_at REAL NOT NULL, received_at REAL NOT NULL,
    score REAL NOT NULL, model_version TEXT NOT NULL, task TEXT NOT NULL, width INTEGER NOT NULL,
    height INTEGER NOT NULL, files TEXT NOT NULL, phash_visible INTEGER NOT NULL, phash_thermal INTEGER NOT NULL,
    labelled INTEGER NOT NULL DEFAULT 0, manifest TEXT NOT NULL);
CREATE INDEX pairs_by_score ON pairs (score DESC, upload_id);"""


def test_an_old_database_is_migrated_in_place(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_PAIRS)
    for i, score in enumerate((0.3, 0.8)):
        conn.execute("INSERT INTO pairs VALUES (?, 'pole-1', 1.0, 2.0, ?, 'v1', 'detect', 8, 6, '{}', 0, 0, 0, '{}')",
                     (f"{i:064x}", score))
    conn.commit()
    conn.close()
    store = SqliteMetadataStore(path)
    try:
        page = store.list_pairs(PairFilters(), limit=10, offset=0)
        assert [p.score for p in page.items] == [0.8, 0.3]
        assert all(p.selection_score is None and p.rank_score == p.score for p in page.items)
        cols = {r[1] for r in store._read().execute("PRAGMA table_info(pairs)")}
        assert {"selection_policy", "selection_score", "rank_score"} <= cols
    finally:
        store.close()
    SqliteMetadataStore(path).close()  # opening again changes nothing


def test_store_raises_its_own_exceptions_and_returns_records(tmp_path, rng):
    store = SqliteMetadataStore(tmp_path / "m.sqlite3")
    try:
        model = ModelRecord("v1", "ab" * 32, 10)
        store.add_model(model)
        with pytest.raises(DuplicateError):
            store.add_model(ModelRecord("v1", "cd" * 32, 11))
        with pytest.raises(NotFoundError):
            store.set_labels({("f" * 64, "visible"): []}, source="x")
        record = PairRecord(upload_id="e" * 64, device_id="pole-1", captured_at=1.0, received_at=2.0, score=0.5,
                            model_version="v1", task="detect", width=8, height=6, files={}, manifest_json="{}")
        assert store.insert_pair(record) is True
        assert store.insert_pair(dataclasses.replace(record, score=0.9)) is False  # duplicate: no error, no write
        assert store.get_pair(record.upload_id).score == 0.5
        page = store.list_pairs(PairFilters(), limit=5, offset=0)
        assert isinstance(page, PairPage) and all(type(p) is PairSummary for p in page.items)
        assert dataclasses.is_dataclass(store.stats()) and store.stats().pairs == 1
    finally:
        store.close()


def test_ingest_raises_domain_errors_not_http(served, rng):
    meta, blobs = served.app.state.ctx.meta, served.app.state.ctx.blobs
    token = meta.find_token(hash_token(served.device2))
    files = synthetic_files(rng)
    with pytest.raises(WrongDevice):
        ingest_pair(meta, blobs, token, manifest_bytes(manifest_for(files)), files)
    with pytest.raises(InvalidUpload):
        ingest_pair(meta, blobs, token, b"{not json", files)
    bad = json.loads(manifest_bytes(manifest_for(files, device_id="pole-2")))
    bad["score"] = 2.0
    with pytest.raises(InvalidUpload):
        ingest_pair(meta, blobs, token, json.dumps(bad).encode(), files)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_sqlite_store_imports_sqlite3_and_ingest_knows_no_http():
    for path in sorted(SERVER_DIR.glob("*.py")):
        if path.name == "metadata.py":
            continue
        assert "sqlite3" not in _imports(path), path.name
    assert not any(m.startswith(("fastapi", "starlette")) for m in _imports(SERVER_DIR / "ingest.py"))
    assert not any(m.startswith(("fastapi", "starlette")) for m in _imports(SERVER_DIR / "metadata.py"))
    assert "HTTPException" not in (SERVER_DIR / "ingest.py").read_text()
