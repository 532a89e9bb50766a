"""Segmentation masks on the server: the store keeps {branch: sha256} and label masks (SQLite and
PostgreSQL), uploads with masks are stored and served, bad masks are refused and nothing is stored."""

from __future__ import annotations

import dataclasses

from msmine.server.records import PairFilters
from tests.server.test_server_store_contract import pair, store  # noqa: F401 (the store fixture, both databases)


def test_store_keeps_pair_masks_and_label_masks(store):  # noqa: F811
    masks = {"fused": "a" * 64, "visible": "b" * 64}
    p = dataclasses.replace(pair(1, 0.5), masks=masks)
    assert store.insert_pair(p)
    assert store.pair_masks(p.upload_id) == masks
    assert store.get_pair(p.upload_id).masks == masks
    assert store.pair_masks("0" * 64) == {}
    assert {"a" * 64, "b" * 64} <= store.referenced_blobs()  # the sweep keeps mask blobs
    plain = pair(2, 0.4)
    store.insert_pair(plain)
    assert store.pair_masks(plain.upload_id) == {}
    # an imported mask label: boxes and mask together, then a mask-only update keeps the boxes
    box = [{"class_id": 1, "box": [0.1, 0.1, 0.2, 0.2]}]
    assert store.set_labels({(p.upload_id, "fusion"): box}, "test", masks={(p.upload_id, "fusion"): "c" * 64}) == 1
    assert store.get_label_masks(p.upload_id) == {"fusion": "c" * 64}
    store.set_labels({}, "again", masks={(p.upload_id, "fusion"): "d" * 64, (plain.upload_id, "visible"): "e" * 64})
    assert store.get_label_masks(p.upload_id) == {"fusion": "d" * 64}
    assert store.get_labels(p.upload_id) == {"fusion": box}
    assert store.get_labels(plain.upload_id) == {"visible": []}
    assert store.list_pairs(PairFilters(labelled=True), limit=10).total == 2
    assert {"d" * 64, "e" * 64} <= store.referenced_blobs()
