"""Ingest: first upload 201, repeat 200 duplicate; every malformed upload gets a 4xx and leaves no trace."""

from __future__ import annotations

import json

import numpy as np
import pytest

from msmine.server.config import ServerConfig
from msmine.wire import compute_upload_id
from tests.server.conftest import make_served
from tests.server.upload_helpers import (
    manifest_bytes,
    manifest_for,
    msrs_files,
    msrs_predictions,
    multipart,
    synthetic_files,
    upload_body,
)


def post(served, body: bytes, ctype: str, token: str | None = None, **headers):
    return served.client.post("/api/v1/uploads", content=body,
                              headers={"Content-Type": ctype, **served.auth(token or served.device), **headers})


def assert_no_trace(served):
    assert served.count_rows("pairs") == 0
    assert served.count_rows("pair_blobs") == 0
    assert served.stored_files() == []
    assert served.tmp_files() == []


def test_real_msrs_pair_is_stored_by_hash(served, msrs_root):
    files = msrs_files(msrs_root, "00001D")
    manifest = manifest_for(files, image_size=(640, 480), predictions=msrs_predictions(msrs_root, "00001D"))
    first = served.upload(manifest, files)
    assert first.status_code == 201, first.text
    assert first.json()["duplicate"] is False
    again = served.upload(manifest, files)
    assert again.status_code == 200
    assert again.json() == {**first.json(), "duplicate": True}
    assert served.count_rows() == 1
    names = {p.name for p in served.stored_files()}
    assert names == {manifest["files"][p]["sha256"] for p in ("visible", "thermal", "heatmap")}
    got = served.client.get(f"/api/v1/pairs/{manifest['upload_id']}/files/thermal", headers=served.auth(served.team))
    assert got.content == files["thermal"] and got.headers["content-type"] == "image/jpeg"


def test_wrong_hash_is_rejected_without_trace(served, rng):
    files = synthetic_files(rng)
    manifest = manifest_for(files)
    tampered = dict(files, thermal=synthetic_files(rng)["thermal"])
    # same length is unlikely; make the manifest carry the original sizes but send other bytes
    resp = served.upload(manifest, tampered)
    assert resp.status_code == 400
    assert "thermal" in resp.json()["detail"]
    assert_no_trace(served)


def test_same_size_wrong_content_names_the_hash(served, rng):
    files = synthetic_files(rng)
    manifest = manifest_for(files)
    flipped = bytearray(files["visible"])
    flipped[-20] ^= 0xFF
    resp = served.upload(manifest, dict(files, visible=bytes(flipped)))
    assert resp.status_code == 400
    assert "content hash" in resp.json()["detail"]
    assert_no_trace(served)


def test_truncated_multipart_is_rejected(served, rng):
    files = synthetic_files(rng)
    body, ctype = upload_body(manifest_bytes(manifest_for(files)), files)
    for cut in (len(body) - 5, len(body) // 2, 40):
        resp = post(served, body[:cut], ctype)
        assert resp.status_code == 400, cut
        assert "truncated" in resp.json()["detail"] or "missing" in resp.json()["detail"]
    assert_no_trace(served)


def test_invalid_json_manifest(served, rng):
    files = synthetic_files(rng)
    body, ctype = upload_body(b'{"schema": 1, "upload_id": ', files)
    resp = post(served, body, ctype)
    assert resp.status_code == 400
    assert "not valid JSON" in resp.json()["detail"]
    body, ctype = upload_body(b"[" * 200_000, files)  # nesting that makes json.loads recurse too deep
    resp = post(served, body, ctype)
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["detail"]
    body, ctype = upload_body(b"\xff\xfe not utf-8", files)
    assert post(served, body, ctype).status_code == 400
    assert_no_trace(served)


def test_unknown_manifest_field(served, rng):
    files = synthetic_files(rng)
    manifest = manifest_for(files)
    manifest["extra"] = 1
    manifest["upload_id"] = compute_upload_id(manifest)
    resp = served.upload(manifest, files)
    assert resp.status_code == 400
    assert "unknown field(s): extra" in resp.json()["detail"]
    nested = manifest_for(files)
    nested["model"]["url"] = "x"
    nested["upload_id"] = compute_upload_id(nested)
    resp = served.upload(nested, files)
    assert resp.status_code == 400 and "manifest.model has unknown" in resp.json()["detail"]
    assert_no_trace(served)


def test_unknown_and_missing_and_repeated_parts(served, rng):
    files = synthetic_files(rng)
    mb = manifest_bytes(manifest_for(files))
    parts = [("manifest", mb, None), *[(p, files[p], p) for p in ("visible", "thermal", "heatmap")]]
    body, ctype = multipart(parts + [("extra", b"x", None)])
    assert "unexpected multipart part 'extra'" in post(served, body, ctype).json()["detail"]
    body, ctype = multipart(parts[:-1])
    resp = post(served, body, ctype)
    assert resp.status_code == 400 and "missing part(s): heatmap" in resp.json()["detail"]
    body, ctype = multipart(parts + [parts[1]])
    assert "sent twice" in post(served, body, ctype).json()["detail"]
    resp = served.client.post("/api/v1/uploads", json={"manifest": {}}, headers=served.auth(served.device))
    assert resp.status_code == 415
    assert_no_trace(served)


def test_tampered_upload_id_and_bad_values(served, rng):
    files = synthetic_files(rng)
    manifest = manifest_for(files)
    manifest["score"] = 0.9  # upload id no longer matches the content
    resp = served.upload(manifest, files)
    assert resp.status_code == 400 and "upload_id does not match" in resp.json()["detail"]
    bad = manifest_for(files)
    bad["score"] = 1.5
    bad["upload_id"] = compute_upload_id(bad)
    assert "score must lie in [0, 1]" in served.upload(bad, files).json()["detail"]
    assert_no_trace(served)


def test_oversize_body_by_content_length_and_by_stream(tmp_path, rng):
    served = make_served(tmp_path / "srv", ServerConfig(rate_limit_per_min=0, max_upload_mb=0.05))
    with served.client:
        big = synthetic_files(rng)
        big["visible"] = b"\x89PNG\r\n\x1a\n" + np.random.default_rng(5).integers(0, 255, 60_000, np.uint8).tobytes()
        body, ctype = upload_body(b"{}", big)
        resp = post(served, body, ctype)
        assert resp.status_code == 413
        assert "larger than the limit" in resp.json()["detail"]

        def chunks():  # no Content-Length: the server must count what arrives
            for i in range(0, len(body), 4096):
                yield body[i:i + 4096]

        resp = served.client.post("/api/v1/uploads", content=chunks(),
                                  headers={"Content-Type": ctype, **served.auth(served.device)})
        assert resp.status_code == 413
        assert_no_trace(served)


def test_path_traversal_file_names_cannot_escape_root(served, rng, tmp_path):
    files = synthetic_files(rng)
    manifest = manifest_for(files)
    evil = ["../../../../tmp/evil.png", "/etc/passwd", "..\\..\\evil.png", "blobs/../../x"]
    parts = [("manifest", manifest_bytes(manifest), evil[0]),
             ("visible", files["visible"], evil[1]), ("thermal", files["thermal"], evil[2]),
             ("heatmap", files["heatmap"], evil[3])]
    body, ctype = multipart(parts)
    assert post(served, body, ctype).status_code == 201
    root = served.root.resolve()
    for p in served.root.rglob("*"):
        assert p.resolve().is_relative_to(root)
        assert "evil" not in p.name and "passwd" not in p.name
    assert not (tmp_path / "evil.png").exists()
    team = served.auth(served.team)
    for path in ("/api/v1/pairs/..%2F..%2Fmsmine.sqlite3/files/visible",
                 f"/api/v1/pairs/{manifest['upload_id']}/files/..%2F..%2Fmsmine.sqlite3",
                 "/api/v1/models/..%2F..%2Fmsmine.sqlite3/file", "/api/v1/models/../file",
                 "/static/..%2Fmsmine.sqlite3", "/static/../app.py", "/static/%2e%2e/%2e%2e/msmine.sqlite3"):
        resp = served.client.get(path, headers=team)
        assert resp.status_code in (404, 422), (path, resp.status_code)
        assert b"SQLite format" not in resp.content


def test_rate_limit_answers_429_with_retry_after(tmp_path, rng):
    served = make_served(tmp_path / "srv", ServerConfig(rate_limit_per_min=3))
    with served.client:
        codes = [served.upload_synthetic(rng)[0].status_code for _ in range(4)]
        assert codes == [201, 201, 201, 429]
        resp, _ = served.upload_synthetic(rng)
        assert resp.status_code == 429
        assert int(resp.headers["Retry-After"]) >= 1
        # another device has its own budget
        assert served.upload_synthetic(rng, token=served.device2, device_id="pole-2")[0].status_code == 201


def test_undecodable_image_is_rejected(served, rng):
    files = synthetic_files(rng)
    files["visible"] = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100  # right magic, broken content
    resp = served.upload(manifest_for(files), files)
    assert resp.status_code == 400 and "cannot be decoded" in resp.json()["detail"]
    assert_no_trace(served)


@pytest.mark.parametrize("content_length", ["abc", "99999999999"])
def test_bad_or_huge_content_length(served, rng, content_length):
    files = synthetic_files(rng)
    body, ctype = upload_body(manifest_bytes(manifest_for(files)), files)
    resp = served.client.post("/api/v1/uploads", content=body, headers={
        "Content-Type": ctype, "Content-Length": content_length, **served.auth(served.device)})
    assert resp.status_code in (400, 413)
    assert_no_trace(served)


def test_response_record_is_json(served, rng):
    resp, manifest = served.upload_synthetic(rng, score=0.25)
    body = resp.json()
    assert body["upload_id"] == manifest["upload_id"] and body["score"] == 0.25
    detail = served.client.get(f"/api/v1/pairs/{manifest['upload_id']}", headers=served.auth(served.team)).json()
    assert detail["predictions"] == manifest["predictions"]
    assert json.loads(json.dumps(detail))["class_names"] == ["person", "bicycle", "car"]
