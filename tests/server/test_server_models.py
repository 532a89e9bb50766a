"""Model registry: publish (data team), latest + download (device or team), hashes, conflicts."""

from __future__ import annotations

import hashlib
import json


def publish(served, content: bytes, version: str, metadata: dict | str | None = None, token: str | None = None):
    data = {"version": version}
    if metadata is not None:
        data["metadata"] = metadata if isinstance(metadata, str) else json.dumps(metadata)
    return served.client.post("/api/v1/models", files={"file": ("../../evil.onnx", content)}, data=data,
                              headers=served.auth(token or served.team))


def test_publish_latest_and_download(served):
    dev = served.auth(served.device)
    assert served.client.get("/api/v1/models/latest", headers=dev).status_code == 404
    v1 = b"\x08\x07onnx-model-one" * 1000
    resp = publish(served, v1, "v1", {"map50": 0.61, "precision": "int8"})
    assert resp.status_code == 201
    assert resp.json()["sha256"] == hashlib.sha256(v1).hexdigest() and resp.json()["bytes"] == len(v1)
    v2 = b"onnx-model-two"
    assert publish(served, v2, "v2").status_code == 201
    latest = served.client.get("/api/v1/models/latest", headers=dev).json()
    assert latest["version"] == "v2" and latest["sha256"] == hashlib.sha256(v2).hexdigest()
    got = served.client.get("/api/v1/models/v1/file", headers=dev)
    assert got.status_code == 200 and got.content == v1
    assert got.headers["x-content-sha256"] == hashlib.sha256(v1).hexdigest()
    assert served.client.get("/api/v1/models/latest/file", headers=dev).content == v2
    assert served.client.get("/api/v1/models/v1", headers=dev).json()["metadata"] == {"map50": 0.61,
                                                                                      "precision": "int8"}
    listed = served.client.get("/api/v1/models", headers=served.auth(served.team)).json()
    assert [m["version"] for m in listed] == ["v2", "v1"]
    assert served.client.get("/api/v1/models/v9/file", headers=dev).status_code == 404
    assert not any("evil" in p.name for p in served.root.rglob("*"))


def test_republish_same_is_idempotent_and_different_conflicts(served):
    assert publish(served, b"model-a", "v1").status_code == 201
    assert publish(served, b"model-a", "v1").status_code == 200
    resp = publish(served, b"model-b", "v1")
    assert resp.status_code == 409 and "already published" in resp.json()["detail"]
    assert served.tmp_files() == [] and len(served.stored_files()) == 1


def test_bad_publish_requests_leave_nothing(served):
    cases = [
        (b"x", "../etc", None, "version must match"),
        (b"x", "latest", None, "not be 'latest'"),
        (b"x", "v1", "{not json", "metadata is not valid JSON"),
        (b"x", "v1", "[1, 2]", "must be a JSON object"),
        (b"", "v1", None, "empty"),
    ]
    for content, version, metadata, message in cases:
        resp = publish(served, content, version, metadata)
        assert resp.status_code == 400, (version, resp.text)
        assert message in resp.json()["detail"]
    resp = served.client.post("/api/v1/models", files={"file": ("m.onnx", b"x")},
                              headers=served.auth(served.team))
    assert resp.status_code == 400 and "missing part(s): version" in resp.json()["detail"]
    assert served.stored_files() == [] and served.tmp_files() == []
    assert served.count_rows("models") == 0


def test_device_cannot_publish(served):
    resp = publish(served, b"model", "v1", token=served.device)
    assert resp.status_code == 403
    assert served.stored_files() == [] and served.tmp_files() == []
