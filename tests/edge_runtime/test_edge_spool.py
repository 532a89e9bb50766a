"""The spool: durable put, lowest-score eviction, recovery after a crash, clear errors."""

import os
import sqlite3

import pytest

from msmine.edge_runtime.spool import Spool
from msmine.errors import UserError
from tests.edge_runtime.helpers import make_pair


def test_put_read_delete_roundtrip(tmp_path):
    spool = Spool(tmp_path / "s", 1 << 20)
    manifest, files = make_pair(1, 0.5)
    assert spool.put(manifest, files)
    assert not spool.put(manifest, files)  # same content: stored once
    item = spool.next_pending()
    assert item.upload_id == manifest["upload_id"] and item.manifest == manifest
    assert spool.read_files(item) == files
    assert spool.total_bytes() == sum(len(b) for b in files.values())
    spool.delete(item.upload_id)
    assert spool.count() == 0 and spool.next_pending() is None
    assert list((tmp_path / "s" / "items").iterdir()) == []


def test_highest_score_first(tmp_path):
    spool = Spool(tmp_path, 1 << 20)
    for seed, score in enumerate([0.2, 0.9, 0.5]):
        spool.put(*make_pair(seed, score))
    assert [spool.next_pending().score] == [0.9]
    top = spool.next_pending()
    assert spool.next_pending(exclude={top.upload_id}).score == 0.5


def test_full_spool_evicts_the_lowest_scores_first(tmp_path):
    m, f = make_pair(0, 0.1)
    one = sum(len(b) for b in f.values())
    spool = Spool(tmp_path, int(one * 3.5))
    scores = [0.1, 0.7, 0.4]
    for seed, score in enumerate(scores):
        assert spool.put(*make_pair(seed, score))
    assert spool.put(*make_pair(3, 0.5))  # evicts 0.1
    assert spool.evicted == 1
    assert not spool.put(*make_pair(4, 0.05))  # below everything: not stored, counted
    assert spool.evicted == 2
    assert spool.next_pending().score == 0.7
    assert sorted(r[0] for r in sqlite3.connect(tmp_path / "index.sqlite").execute("SELECT score FROM items")) == [0.4, 0.5, 0.7]
    assert spool.total_bytes() <= spool.max_bytes


def test_reopen_after_crash_cleans_half_written_and_orphan_files(tmp_path):
    spool = Spool(tmp_path, 1 << 20)
    m1, f1 = make_pair(1, 0.3)
    spool.put(m1, f1)
    spool.close()
    # a crash mid-put: a temp file, and renamed files whose row was never committed
    (tmp_path / "tmp" / "x.visible.tmp").write_bytes(b"partial")
    m2, _ = make_pair(2, 0.4)
    (tmp_path / "items" / f"{m2['upload_id']}.visible").write_bytes(b"orphan")
    # and a row whose files vanished
    m3, f3 = make_pair(3, 0.9)
    s2 = Spool(tmp_path, 1 << 20)
    s2.put(m3, f3)
    s2.close()
    os.remove(tmp_path / "items" / f"{m3['upload_id']}.thermal")
    s3 = Spool(tmp_path, 1 << 20)
    assert s3.ids() == [m1["upload_id"]]
    assert sorted(p.name for p in (tmp_path / "items").iterdir()) == sorted(
        f"{m1['upload_id']}.{p}" for p in [*f1, "manifest.json"])
    assert list((tmp_path / "tmp").iterdir()) == []


def test_unwritable_spool_dir_is_a_user_error(tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("x")
        target = blocker / "spool"  # a path under a regular file can never be created, even by root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "spool"
    with pytest.raises(UserError, match="spool directory .* is not writable"):
        Spool(target, 1 << 20)


def test_refused_pairs_stay_with_their_reason_but_are_not_retried(tmp_path):
    spool = Spool(tmp_path, 1 << 20)
    m, f = make_pair(1, 0.3)
    spool.put(m, f)
    spool.refuse(m["upload_id"], "422: bad manifest", key="k1")
    assert spool.next_pending() is None and spool.count("refused") == 1
    assert spool.refused() == [(m["upload_id"], "422: bad manifest")]
    assert spool.requeue_refused(unless_key="k1") == 0  # same identity: stays aside
    assert spool.requeue_refused(unless_key="k2") == 1 and spool.next_pending().upload_id == m["upload_id"]
