"""Ranking across the fleet: filters, sort by score, paging, top-K batches without near-duplicates."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.server.upload_helpers import encode, manifest_for, msrs_files, synthetic_files

T0 = 1_764_000_000.0


@pytest.fixture
def fleet(served, rng):
    """30 pairs from 3 devices, two model versions, scores spread over [0, 1]."""
    from msmine.server.tokens import create_token

    tokens = {"pole-1": served.device, "pole-2": served.device2,
              "car-9": create_token(served.app.state.ctx.meta, role="device", device_id="car-9")[0]}
    devices = list(tokens)
    scores = rng.permutation(np.linspace(0.01, 0.99, 30))
    for i, score in enumerate(scores):
        device = devices[i % 3]
        resp, _ = served.upload_synthetic(rng, token=tokens[device], device_id=device, score=float(score),
                                          captured_at=T0 + i * 60, model_version="v1" if i < 20 else "v2")
        assert resp.status_code == 201
    return served


def listing(served, **params):
    resp = served.client.get("/api/v1/pairs", params=params, headers=served.auth(served.team))
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_sorted_by_score_and_paged(fleet):
    full = listing(fleet, limit=100)
    scores = [item["score"] for item in full["items"]]
    assert full["total"] == 30 and scores == sorted(scores, reverse=True)
    pages = [listing(fleet, limit=7, offset=o)["items"] for o in range(0, 30, 7)]
    assert [i["upload_id"] for p in pages for i in p] == [i["upload_id"] for i in full["items"]]


def test_filters(fleet):
    by_device = listing(fleet, device="car-9", limit=100)
    assert by_device["total"] == 10 and {i["device_id"] for i in by_device["items"]} == {"car-9"}
    band = listing(fleet, min_score=0.3, max_score=0.6, limit=100)
    assert band["total"] > 0 and all(0.3 <= i["score"] <= 0.6 for i in band["items"])
    window = listing(fleet, since=T0 + 5 * 60, until=T0 + 10 * 60, limit=100)
    assert window["total"] == 5 and all(T0 + 300 <= i["captured_at"] < T0 + 600 for i in window["items"])
    assert listing(fleet, model_version="v2", limit=100)["total"] == 10
    assert listing(fleet, labelled="true")["total"] == 0
    assert listing(fleet, labelled="false")["total"] == 30
    combined = listing(fleet, device="pole-1", model_version="v1", min_score=0.5, limit=100)
    assert all(i["device_id"] == "pole-1" and i["model_version"] == "v1" and i["score"] >= 0.5
               for i in combined["items"])


def test_bad_listing_parameters(fleet):
    team = fleet.auth(fleet.team)
    assert fleet.client.get("/api/v1/pairs", params={"limit": 10_000}, headers=team).status_code == 400
    assert fleet.client.get("/api/v1/pairs", params={"min_score": "abc"}, headers=team).status_code == 422
    assert fleet.client.get("/api/v1/pairs", params={"offset": -1}, headers=team).status_code == 422


def test_batch_is_top_k_across_devices(fleet):
    team = fleet.auth(fleet.team)
    resp = fleet.client.post("/api/v1/batches", json={"k": 5}, headers=team)
    assert resp.status_code == 201
    batch = resp.json()
    top5 = [i["upload_id"] for i in listing(fleet, limit=5)["items"]]
    assert batch["upload_ids"] == top5  # random content: no near-duplicates
    stored = fleet.client.get(f"/api/v1/batches/{batch['batch_id']}", headers=team).json()
    assert stored["upload_ids"] == top5
    filtered = fleet.client.post("/api/v1/batches", json={"k": 3, "filters": {"device": "pole-2"}}, headers=team)
    assert [fleet.client.get(f"/api/v1/pairs/{u}", headers=team).json()["device_id"]
            for u in filtered.json()["upload_ids"]] == ["pole-2"] * 3
    assert fleet.client.post("/api/v1/batches", json={"k": 3, "colour": 1}, headers=team).status_code == 422
    assert fleet.client.post("/api/v1/batches", json={"k": 0}, headers=team).status_code == 422


def test_near_duplicates_from_two_vehicles_are_removed(served, msrs_root):
    """The same MSRS scene from two devices (re-encoded, so different bytes) counts once."""
    team = served.auth(served.team)
    scene = msrs_files(msrs_root, "00005N")
    vis = cv2.imdecode(np.frombuffer(scene["visible"], np.uint8), cv2.IMREAD_COLOR)
    th = cv2.imdecode(np.frombuffer(scene["thermal"], np.uint8), cv2.IMREAD_GRAYSCALE)
    shifted = {"visible": encode(cv2.convertScaleAbs(vis, alpha=1.0, beta=6), ".jpg"),
               "thermal": encode(th, ".jpg"), "heatmap": scene["heatmap"]}
    other = msrs_files(msrs_root, "00010N")
    size = (640, 480)
    a = manifest_for(scene, device_id="pole-1", score=0.9, image_size=size)
    b = manifest_for(shifted, device_id="pole-2", score=0.8, image_size=size)
    c = manifest_for(other, device_id="pole-1", score=0.7, image_size=size)
    assert served.upload(a, scene).status_code == 201
    assert served.upload(b, shifted, token=served.device2).status_code == 201
    assert served.upload(c, other).status_code == 201
    batch = served.client.post("/api/v1/batches", json={"k": 2}, headers=team).json()
    assert batch["upload_ids"] == [a["upload_id"], c["upload_id"]]
    assert batch["skipped_duplicates"] == 1
    keep_all = served.client.post("/api/v1/batches", json={"k": 2, "hamming": -1}, headers=team).json()
    assert keep_all["upload_ids"] == [a["upload_id"], b["upload_id"]]


def test_phash_distance_of_unrelated_pairs_is_large(rng):
    from msmine.phash import dhash, pair_distance

    f1, f2 = synthetic_files(rng), synthetic_files(rng)
    h1 = (dhash(f1["visible"]), dhash(f1["thermal"]))
    h2 = (dhash(f2["visible"]), dhash(f2["thermal"]))
    d_self = pair_distance(np.array([h1[0]], np.uint64), np.array([h1[1]], np.uint64), *h1)
    d_other = pair_distance(np.array([h2[0]], np.uint64), np.array([h2[1]], np.uint64), *h1)
    assert int(d_self[0]) == 0 and int(d_other[0]) > 30


def test_keyset_cursor_pages_the_whole_listing(fleet):
    """GET /api/v1/pairs?after=<next>: the pages of a cursor walk are the ranking, in order, once each."""
    auth = fleet.auth(fleet.team)
    everything = fleet.client.get("/api/v1/pairs?limit=100", headers=auth).json()
    assert everything["next"] is None
    walked, after = [], None
    while True:
        url = "/api/v1/pairs?limit=7&device=pole-1" + (f"&after={after}" if after else "")
        page = fleet.client.get(url, headers=auth).json()
        assert page["total"] == 10
        walked += [p["upload_id"] for p in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert walked == [p["upload_id"] for p in everything["items"] if p["device_id"] == "pole-1"]
    bad = fleet.client.get("/api/v1/pairs?after=nonsense", headers=auth)
    assert bad.status_code == 422 and "cursor" in bad.json()["detail"]
    both = fleet.client.get(f"/api/v1/pairs?offset=3&after={walked and '0.5:' + walked[0]}", headers=auth)
    assert both.status_code == 422
