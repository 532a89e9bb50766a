"""The score a pair is kept on is the score it is stored, evicted and uploaded on (wire schema 2)."""

from __future__ import annotations

import json
import sqlite3

from msmine import wire
from msmine.edge_runtime.pipeline import EdgePipeline
from msmine.edge_runtime.spool import Spool
from tests.edge_runtime.helpers import png
from tests.edge_runtime.test_edge_pipeline import config, lines


def pair(seed: int, paper: float, selected: float, policy: str = "entropy"):
    files = {"visible": png(seed), "thermal": png(seed + 10_000), "heatmap": png(seed + 20_000)}
    manifest = wire.build_manifest(
        device_id="test-dev", captured_at={"visible": 1000.0 + seed, "thermal": 1000.0 + seed},
        model_version="v1", model_hash="a" * 64, task="detect", score=paper, image_size=(16, 16),
        class_names=["person"], files=files, predictions={"fused": [], "visible": [], "thermal": []},
        selection={"policy": policy, "score": selected},
    )
    return manifest, files


def test_kept_pairs_carry_the_policy_and_its_score_beside_the_inconsistency(tmp_path, small_model):
    cfg = config(tmp_path, small_model, n=40, score="entropy")
    EdgePipeline.from_config(cfg).run()
    dets = lines(tmp_path / "det.jsonl")
    by_time = {round(d["captured_at"]["visible"], 6): d for d in dets}
    with sqlite3.connect(tmp_path / "spool" / "index.sqlite") as db:
        rows = [(r[0], json.loads(r[1])) for r in db.execute("SELECT score, manifest FROM items")]
    assert len(rows) == 3
    for stored, m in rows:
        d = by_time[round(m["captured_at"]["visible"], 6)]
        assert m["schema"] == 2 and m["selection"]["policy"] == "entropy"
        assert abs(m["selection"]["score"] - d["entropy"]) < 1e-9  # what the selector kept it on
        assert abs(m["score"] - d["inconsistency"]) < 1e-9  # the paper's score, still beside it
        assert stored == m["selection"]["score"]  # the spool orders by the selection score
    # the three kept are the top entropy scores (not the top inconsistencies)
    top = sorted((d["entropy"] for d in dets), reverse=True)[:3]
    assert sorted((m["selection"]["score"] for _, m in rows), reverse=True) == top


def test_the_spool_evicts_and_uploads_by_the_selection_score(tmp_path):
    high_paper_low_sel = pair(1, paper=0.9, selected=0.1)
    mid = pair(2, paper=0.2, selected=0.5)
    top = pair(3, paper=0.1, selected=0.8)
    one = sum(len(b) for b in mid[1].values())
    spool = Spool(tmp_path, int(one * 2.5))
    assert spool.put(*high_paper_low_sel) and spool.put(*mid)
    assert spool.put(*top)  # no room for three: the lowest *selection* score goes, not the lowest paper score
    assert set(spool.ids()) == {mid[0]["upload_id"], top[0]["upload_id"]}
    assert spool.next_pending().upload_id == top[0]["upload_id"]  # the highest selection score is sent first
    assert spool.next_pending().score == 0.8


def test_schema_1_pairs_in_an_old_spool_still_order_by_their_score(tmp_path):
    from tests.edge_runtime.helpers import make_pair

    spool = Spool(tmp_path, 1 << 20)
    old, files = make_pair(1, 0.7)  # schema 1: no selection field
    assert old["schema"] == 1 and spool.put(old, files)
    assert spool.put(*pair(2, paper=0.9, selected=0.3))
    assert spool.next_pending().upload_id == old["upload_id"]
