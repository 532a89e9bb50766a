"""Segmentation masks on the server: the store keeps {branch: sha256} and label masks (SQLite and
PostgreSQL), uploads with masks are stored and served, bad masks are refused and nothing is stored."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest

from msmine import wire
from msmine.masks import decode_mask_png, encode_mask_png
from msmine.server.records import PairFilters
from msmine.wire import FILE_PARTS, MASK_PARTS, build_manifest
from tests.server.test_server_store_contract import pair, store  # noqa: F401 (the store fixture, both databases)
from tests.server.upload_helpers import multipart, synthetic_files


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


def test_listing_by_task_and_the_latest_model_version(store):  # noqa: F811
    """Scores of different tasks and models are not comparable: the gallery ranks within one."""
    store.insert_pair(dataclasses.replace(pair(1, 0.04, model_version="det-v1"), received_at=10.0))
    store.insert_pair(dataclasses.replace(pair(2, 0.30, model_version="seg-v1"), task="segment", received_at=20.0))
    store.insert_pair(dataclasses.replace(pair(3, 0.02, model_version="det-v2"), received_at=15.0))
    assert [p.model_version for p in store.list_pairs(PairFilters(task="detect"), limit=10).items] == ["det-v1",
                                                                                                       "det-v2"]
    assert store.list_pairs(PairFilters(task="segment"), limit=10).total == 1
    stats = store.stats()
    assert stats.model_tasks == {"det-v1": "detect", "det-v2": "detect", "seg-v1": "segment"}
    assert stats.latest_model_version == "seg-v1"


# ---- uploads with masks, through the HTTP API -----------------------------------------------------

SEG_CLASSES = ["unlabelled", "car", "person", "bike"]
W, H = 96, 72


def seg_masks(rng) -> dict[str, np.ndarray]:
    base = np.zeros((H, W), np.uint8)
    base[10:40, 20:60] = 1
    base[50:70, 5:30] = 2
    other = base.copy()
    other[:, 70:] = 3
    return {"fused": base, "visible": other, "thermal": rng.integers(0, 4, (H, W)).astype(np.uint8)}


def seg_manifest(files: dict[str, bytes], masks: dict[str, bytes], **kw) -> dict:
    return build_manifest(
        device_id="pole-1", captured_at={"visible": 1_764_131_234.5, "thermal": 1_764_131_234.48},
        model_version="seg-v1", model_hash="cd" * 32, task="segment", score=0.3, image_size=(W, H),
        class_names=SEG_CLASSES, files=files, predictions={}, selection={"policy": "inconsistency", "score": 0.3},
        masks=masks, **kw)


def post(served, manifest: dict, files: dict[str, bytes], masks: dict[str, bytes]):
    parts = [("manifest", json.dumps(manifest).encode(), "manifest.json"),
             *[(p, files[p], f"{p}.png") for p in FILE_PARTS],
             *[(MASK_PARTS[b], data, f"{b}.png") for b, data in masks.items()]]
    body, ctype = multipart(parts)
    return served.client.post("/api/v1/uploads", content=body,
                              headers={"Content-Type": ctype, **served.auth(served.device)})


def test_upload_with_masks_is_stored_and_served(served, rng):
    files = synthetic_files(rng)
    arrays = seg_masks(rng)
    masks = {b: encode_mask_png(a) for b, a in arrays.items()}
    manifest = seg_manifest(files, masks)
    r = post(served, manifest, files, masks)
    assert r.status_code == 201, r.text
    uid = manifest["upload_id"]
    team = served.auth(served.team)
    detail = served.client.get(f"/api/v1/pairs/{uid}", headers=team).json()
    assert detail["masks"] == {b: wire.sha256_hex(d) for b, d in masks.items()}
    assert detail["label_masks"] == {}
    for branch, data in masks.items():
        got = served.client.get(f"/api/v1/pairs/{uid}/masks/{branch}", headers=team)
        assert got.status_code == 200 and got.headers["content-type"] == "image/png"
        assert got.content == data  # content-addressed: the very bytes the device sent
        np.testing.assert_array_equal(decode_mask_png(got.content, (W, H), len(SEG_CLASSES)), arrays[branch])
    # the blob store holds images and masks by hash; the store's accessor agrees with the API
    assert served.app.state.ctx.meta.pair_masks(uid) == detail["masks"]
    assert all(served.app.state.ctx.blobs.exists(sha) for sha in detail["masks"].values())
    # same auth as images: a device token and no token are refused
    assert served.client.get(f"/api/v1/pairs/{uid}/masks/fused", headers=served.auth(served.device)).status_code == 403
    assert served.client.get(f"/api/v1/pairs/{uid}/masks/fused").status_code == 401
    # a repeat is a duplicate (masks are part of the content hash)
    assert post(served, manifest, files, masks).status_code == 200
    # a detection pair has no masks: 404 with a reason
    r2, m2 = served.upload_synthetic(rng)
    assert r2.status_code == 201
    miss = served.client.get(f"/api/v1/pairs/{m2['upload_id']}/masks/fused", headers=team)
    assert miss.status_code == 404 and "no fused mask" in miss.json()["detail"]


def _bad_cases(rng, files):
    good = encode_mask_png(seg_masks(rng)["fused"])
    wrong_size = encode_mask_png(np.zeros((H // 2, W // 2), np.uint8))
    out_of_range = encode_mask_png(np.full((H, W), len(SEG_CLASSES), np.uint8))
    colour = cv2.imencode(".png", np.zeros((H, W, 3), np.uint8))[1].tobytes()
    corrupt = good[:60] + bytes(len(good) - 60)  # header intact, image data zeroed
    return [
        # (manifest masks, sent masks, reason)
        ({"fused": out_of_range}, {"fused": out_of_range}, "class id 4, the model has 4 classes"),
        ({"fused": colour}, {"fused": colour}, "8-bit single channel"),
        ({"fused": corrupt}, {"fused": corrupt}, "corrupt"),
        ({"fused": good}, {"fused": good[:-5]}, "truncated"),
        ({"fused": good}, {}, "declared in manifest.masks but not sent"),
        ({}, {"visible": good}, "sent without an entry in manifest.masks"),
        (None, {"fused": wrong_size}, "the image is 96x72"),
    ]


def test_masks_in_s3_object_storage(s3_endpoint, tmp_path, monkeypatch, rng):
    """The same upload with `--blobs s3://...`: the mask PNGs land in the bucket, content-addressed."""
    import os

    from msmine.server.config import ServerConfig
    from tests.server.conftest import make_served

    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    config = ServerConfig(rate_limit_per_min=0, blobs=f"s3://masks-{os.getpid()}/p", s3_endpoint_url=s3_endpoint,
                          s3_create_bucket=True)
    served = make_served(tmp_path / "srv", config=config)
    with served.client:
        files = synthetic_files(rng)
        masks = {b: encode_mask_png(a) for b, a in seg_masks(rng).items()}
        manifest = seg_manifest(files, masks)
        assert post(served, manifest, files, masks).status_code == 201
        blobs = served.app.state.ctx.blobs
        stored = set(blobs.iter_all())
        assert {wire.sha256_hex(d) for d in masks.values()} <= stored
        got = served.client.get(f"/api/v1/pairs/{manifest['upload_id']}/masks/thermal", headers=served.auth(served.team))
        assert got.status_code == 200 and got.content == masks["thermal"]
    served.app.state.ctx.close()


def test_bad_masks_are_refused_and_nothing_is_stored(served, rng):
    files = synthetic_files(rng)
    for declared, sent, reason in _bad_cases(rng, files):
        if declared is None:  # a manifest that declares a wrong size: refused by the wire format
            manifest = seg_manifest(files, {"fused": encode_mask_png(seg_masks(rng)["fused"])})
            manifest["masks"]["fused"].update(width=W // 2, height=H // 2, bytes=len(sent["fused"]),
                                              sha256=wire.sha256_hex(sent["fused"]))
            manifest["upload_id"] = wire.compute_upload_id(manifest)
        else:
            manifest = seg_manifest(files, declared)
        r = post(served, manifest, files, sent)
        assert r.status_code == 400, (reason, r.text)
        detail = r.json()["detail"]
        assert reason in detail and "\n" not in detail, (reason, detail)
    assert served.count_rows() == 0 and served.stored_files() == []


def test_masks_only_for_segmentation_and_sized_to_the_image():
    files = synthetic_files(np.random.default_rng(0))
    with pytest.raises(wire.WireError, match="only for task 'segment'"):
        build_manifest(device_id="pole-1", captured_at={"visible": 1.0, "thermal": 1.0}, model_version="v1",
                       model_hash="cd" * 32, task="detect", score=0.3, image_size=(W, H), class_names=SEG_CLASSES,
                       files=files, predictions={}, masks={"fused": encode_mask_png(np.zeros((H, W), np.uint8))})
    with pytest.raises(wire.WireError, match="sized to the camera image"):
        seg_manifest(files, {"fused": encode_mask_png(np.zeros((H, W + 1), np.uint8))})
    # without masks, a segmentation manifest is what it was (backward compatible)
    assert "masks" not in seg_manifest(files, {})


# ---- msmine pull --labelled: segmentation/<id>.png from imported mask labels ---------------------------


def test_pull_writes_segmentation_masks_from_mask_labels(tmp_path, capsys):
    import requests

    from msmine.loop.cli import main as msmine_main
    from msmine.server.config import ServerConfig
    from msmine.server.context import open_stores
    from tests.server.live_server import LiveServer, make_tokens
    from tests.server.upload_helpers import manifest_for, upload_body

    root = tmp_path / "srv"
    tokens = make_tokens(root, ("pole-1",))
    server = LiveServer(root, ("--rate-limit", "0")).start()
    rng = np.random.default_rng(5)
    try:
        ids, labels = [], {}
        for _ in range(2):
            files = synthetic_files(rng)
            masks = {b: encode_mask_png(a) for b, a in seg_masks(rng).items()}
            manifest = seg_manifest(files, masks)
            parts = [("manifest", json.dumps(manifest).encode(), "m.json"), *[(p, files[p], p) for p in FILE_PARTS],
                     *[(MASK_PARTS[b], d, b) for b, d in masks.items()]]
            body, ctype = multipart(parts)
            r = requests.post(f"{server.url}/api/v1/uploads", data=body, timeout=30,
                              headers={"Content-Type": ctype, "Authorization": f"Bearer {tokens['pole-1']}"})
            assert r.status_code == 201, r.text
            ids.append(manifest["upload_id"])
        det_files = synthetic_files(rng)
        det = manifest_for(det_files)
        body, ctype = upload_body(json.dumps(det).encode(), det_files)
        assert requests.post(f"{server.url}/api/v1/uploads", data=body, timeout=30, headers={
            "Content-Type": ctype, "Authorization": f"Bearer {tokens['pole-1']}"}).status_code == 201
        # imported labels, as the label import stores them: a mask PNG blob referenced from the label
        meta, blobs = open_stores(root, ServerConfig())
        try:
            for i, uid in enumerate(ids):
                truth = np.zeros((H, W), np.uint8)
                truth[5 + i:30, 10:50] = 2  # "person" in the pair's classes
                truth[40:60, 60:90] = 1  # "car"
                labels[uid] = truth
                modality = "fusion" if i == 0 else "visible"
                meta.set_labels({}, "test", masks={(uid, modality): blobs.put(encode_mask_png(truth))})
            meta.set_labels({(det["upload_id"], "fusion"): [[0, 0.5, 0.5, 0.2, 0.2]]}, "test")
        finally:
            meta.close()
        out = tmp_path / "ds"
        out.mkdir()
        (out / "segmentation_classes.txt").write_text("0 unlabelled\n1 person\n2 car\n")  # the earlier set's order
        pull = ["pull", "--server", server.url, "--token", tokens["team"], "--labelled", "--out", str(out)]
        assert msmine_main(pull) == 1
        assert "labelled pairs of both tasks (1 detect, 2 segment): pass --task" in capsys.readouterr().err
        assert msmine_main([*pull, "--task", "segment"]) == 0
        said = capsys.readouterr().out
        assert "wrote 2 labelled segment pairs, 2 segmentation masks" in said and "other task" in said
    finally:
        server.stop()
    names = (out / "segmentation_classes.txt").read_text().split("\n")
    assert names[:4] == ["0 unlabelled", "1 person", "2 car", "3 bike"]
    for uid, truth in labels.items():
        got = decode_mask_png((out / "train" / "segmentation" / f"{uid}.png").read_bytes(), (W, H), 4)
        lut = np.array([0, 2, 1, 3], np.uint8)  # pair ids (unlabelled, car, person, bike) -> merged ids
        np.testing.assert_array_equal(got, lut[truth])
        assert (out / "train" / "visible" / f"{uid}.png").is_file()
        assert (out / "train" / "infrared" / f"{uid}.png").is_file()
    assert not (out / "train" / "labels").exists()
    data = pytest.importorskip("msmine.train.data", reason="the trainer package is not in this checkout")
    ds = data.open_dataset(out, "train")
    assert len(ds) == 2 and ds.segmentation_classes == ["unlabelled", "person", "car", "bike"]
