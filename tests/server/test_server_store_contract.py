"""The storage seam's contract, run against every metadata store: SQLite (the embedded default) and
PostgreSQL (a real server started by the tests). Same records in, same records and exceptions out."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading

import pytest

from msmine.server.errors import DuplicateError, NotFoundError
from msmine.server.metadata import SqliteMetadataStore
from msmine.server.records import ModelRecord, PairFilters, PairRecord


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqliteMetadataStore(tmp_path / "meta.sqlite3")
    else:
        from msmine.server.metadata_pg import PostgresMetadataStore

        s = PostgresMetadataStore(request.getfixturevalue("postgres_dsn"), max_size=4)
    yield s
    s.close()


def pair(i: int, score: float, device: str = "pole-1", selection: float | None = None, **kw) -> PairRecord:
    uid = hashlib.sha256(f"pair-{i}".encode()).hexdigest()
    files = {part: {"sha256": hashlib.sha256(f"{part}-{i}".encode()).hexdigest(), "bytes": 10,
                    "media_type": "image/png"} for part in ("visible", "thermal")}
    return PairRecord(upload_id=uid, device_id=device, captured_at=1000.0 + i, received_at=2000.0 + i,
                      score=score, model_version=kw.pop("model_version", "m1"), task="detect", width=64, height=48,
                      selection_policy="entropy" if selection is not None else None, selection_score=selection,
                      files=files, phash_visible=(1 << 63) + i, phash_thermal=i,
                      manifest_json=json.dumps({"i": i}), **kw)


def test_pairs_insert_get_duplicate(store):
    p = pair(1, 0.5)
    assert store.insert_pair(p) is True
    assert store.insert_pair(p) is False  # the database decides duplicates
    got = store.get_pair(p.upload_id)
    # a plain record, equal field by field; 64-bit hashes come back as signed int64 (as stored)
    assert got == dataclasses.replace(p, phash_visible=p.phash_visible - (1 << 64))
    assert store.get_pair("0" * 64) is None
    assert store.referenced_blobs() == {f["sha256"] for f in p.files.values()}
    masked = pair(2, 0.4, masks={"fused": "ab" * 32})  # a mask is a referenced blob too
    assert store.insert_pair(masked) is True
    assert store.insert_pair(masked) is False
    assert store.get_pair(masked.upload_id).masks == {"fused": "ab" * 32}
    assert store.referenced_blobs() == {f["sha256"] for q in (p, masked) for f in q.files.values()} | {"ab" * 32}
    assert store.stats().pairs == 2


def test_ranking_filters_paging_and_keyset_iteration(store):
    scores = [0.1, 0.9, 0.5, 0.5, 0.7, 0.3]
    for i, s in enumerate(scores):
        store.insert_pair(pair(i, s, device="pole-1" if i % 2 else "pole-2"))
    store.insert_pair(pair(99, 0.01, selection=0.95))  # ranked on its selection score
    page = store.list_pairs(PairFilters(), limit=3, offset=0)
    assert page.total == 7
    assert [p.rank_score for p in page.items] == [0.95, 0.9, 0.7]
    rest = store.list_pairs(PairFilters(), limit=10, offset=3)
    assert [p.rank_score for p in rest.items] == [0.5, 0.5, 0.3, 0.1]
    assert rest.items[0].upload_id < rest.items[1].upload_id  # ties by upload id
    only = store.list_pairs(PairFilters(device="pole-2", min_score=0.2), limit=10, offset=0)
    assert {p.device_id for p in only.items} == {"pole-2"} and [p.score for p in only.items] == [0.7, 0.5]
    ranked = list(store.iter_ranked(PairFilters(), chunk=2))
    assert [uid for uid, _, _ in ranked] == [p.upload_id for p in page.items + rest.items]
    assert ranked[0][1] == pair(99, 0).phash_visible - (1 << 64)  # signed int64 as stored


def test_labels(store):
    p = pair(1, 0.5)
    store.insert_pair(p)
    assert store.set_labels({(p.upload_id, "visible"): [[0, 1, 2, 3, 4]]}, source="coco") == 1
    store.set_labels({(p.upload_id, "visible"): [[1, 1, 2, 3, 4]], (p.upload_id, "fusion"): []}, source="ls")
    assert store.get_labels(p.upload_id) == {"visible": [[1, 1, 2, 3, 4]], "fusion": []}
    assert store.get_pair(p.upload_id).labelled is True
    with pytest.raises(NotFoundError):
        store.set_labels({("f" * 64, "visible"): []}, source="x")
    assert store.list_pairs(PairFilters(labelled=True), 10, 0).total == 1


def test_tokens(store):
    t = store.add_token("pole-1", "device", "pole-1", "h1")
    store.add_token("team", "data-team", None, "h2")
    assert store.find_token("h1").id == t.id and store.find_token("nope") is None
    assert [x.name for x in store.list_tokens()] == ["pole-1", "team"]
    assert store.revoke_token(t.id) is True and store.revoke_token(t.id) is False
    assert store.find_token("h1") is None


def test_models(store):
    assert store.latest_model() is None
    store.add_model(ModelRecord(version="v1", sha256="a" * 64, bytes=3, metadata={"task": "detect"}))
    store.add_model(ModelRecord(version="v2", sha256="b" * 64, bytes=4))
    with pytest.raises(DuplicateError):
        store.add_model(ModelRecord(version="v1", sha256="c" * 64, bytes=5))
    assert store.latest_model().version == "v2"
    assert [m.version for m in store.list_models()] == ["v2", "v1"]
    assert store.get_model("v1").metadata == {"task": "detect"}
    assert "a" * 64 in store.referenced_blobs()


def test_batches(store):
    ids = [pair(i, 0.1 * i).upload_id for i in range(3)]
    for i in range(3):
        store.insert_pair(pair(i, 0.1 * i))
    b = store.create_batch("0123456789abcdef", 3, PairFilters(device="pole-1"), 4, ids[::-1])
    assert store.get_batch(b.batch_id).upload_ids == ids[::-1]
    assert store.get_batch(b.batch_id).filters["device"] == "pole-1"
    with pytest.raises(DuplicateError):
        store.create_batch("0123456789abcdef", 1, PairFilters(), 4, ids[:1])
    with pytest.raises(NotFoundError):
        store.create_batch("fedcba9876543210", 1, PairFilters(), 4, ["e" * 64])
    assert store.get_batch("fedcba9876543210") is None  # nothing half-written
    assert store.get_batch("ffffffffffffffff") is None


def test_stats(store):
    store.insert_pair(pair(1, 0.5, device="b"))
    store.insert_pair(pair(2, 0.5, device="a", model_version="m2"))
    stats = store.stats()
    assert (stats.pairs, stats.labelled, stats.devices, stats.model_versions) == (2, 0, ["a", "b"], ["m1", "m2"])


def test_concurrent_duplicate_inserts_store_one(store):
    """Eight writers (threads with their own connections) insert the same pair at once: one wins."""
    p = pair(7, 0.5)
    results, barrier = [], threading.Barrier(8)

    def insert():
        barrier.wait()
        results.append(store.insert_pair(p))

    threads = [threading.Thread(target=insert) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [False] * 7 + [True]
    assert store.stats().pairs == 1


def test_migrations_are_versioned_and_applied_once(store, tmp_path, request):
    from msmine.server import migrations

    assert store.schema_version() == migrations.CURRENT_VERSION
    store.insert_pair(pair(1, 0.5))
    # opening again (a restart, or a second replica) applies nothing and keeps the data
    if isinstance(store, SqliteMetadataStore):
        again = SqliteMetadataStore(store.path)
    else:
        from msmine.server.metadata_pg import PostgresMetadataStore

        again = PostgresMetadataStore(store.dsn, max_size=2)
    try:
        assert again.schema_version() == migrations.CURRENT_VERSION
        assert again.stats().pairs == 1
    finally:
        again.close()


def test_a_database_from_a_newer_release_is_refused(tmp_path):
    import sqlite3

    from msmine.server.errors import StoreError

    path = tmp_path / "meta.sqlite3"
    SqliteMetadataStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'from the future', 0)")
    with pytest.raises(StoreError, match="newer than this msmine"):
        SqliteMetadataStore(path)


def test_keyset_pages_and_trigger_kept_totals(store):
    from msmine.server.records import decode_cursor

    for i in range(25):
        store.insert_pair(pair(i, round((i * 7 % 10) / 10, 1), device="pole-1" if i % 3 else "pole-2"))
    by_offset = [p.upload_id for p in store.list_pairs(PairFilters(), 100, 0).items]
    pages, after = [], None
    while True:
        page = store.list_pairs(PairFilters(), 4, after=decode_cursor(after) if after else None)
        assert page.total == 25
        pages += [p.upload_id for p in page.items]
        after = page.next_after
        if after is None:
            break
    assert pages == by_offset  # ties (equal scores) included, nothing skipped or repeated
    # totals from the trigger-kept counts, and from a real COUNT where a filter needs one
    assert store.list_pairs(PairFilters(device="pole-2"), 1, 0).total == 9
    first = store.list_pairs(PairFilters(device="pole-2"), 1, 0).items[0]
    store.set_labels({(first.upload_id, "visible"): []}, source="t")
    store.set_labels({(first.upload_id, "fusion"): []}, source="t")  # labelled twice: counted once
    assert store.list_pairs(PairFilters(labelled=True), 1, 0).total == 1
    assert store.list_pairs(PairFilters(labelled=False, device="pole-2"), 1, 0).total == 8
    assert store.list_pairs(PairFilters(since=1010.0), 1, 0).total == 15
    assert store.stats().pairs == 25
