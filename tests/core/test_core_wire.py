"""The wire format shared by the device and the server."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest

from msmine import wire


def png(value: int) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((8, 8, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def make_manifest(**overrides):
    args = dict(
        device_id="pole-17",
        captured_at={"visible": 1764131234.51, "thermal": 1764131234.49},
        model_version="v1",
        model_hash="a" * 64,
        task="detect",
        score=0.42,
        image_size=(640, 480),
        class_names=["person", "bicycle", "car"],
        files={"visible": png(1), "thermal": png(2), "heatmap": png(3)},
        predictions={"fused": [{"box": [0.1, 0.2, 0.3, 0.4], "score": 0.9, "class_id": 0}], "visible": [], "thermal": []},
    )
    args.update(overrides)
    return wire.build_manifest(**args)


def test_build_and_parse_roundtrip():
    m = make_manifest()
    assert wire.parse_manifest(wire.canonical_json(m)) == m
    files = {"visible": png(1), "thermal": png(2), "heatmap": png(3)}
    for part, data in files.items():
        wire.verify_file(m, part, data)


def test_upload_id_is_a_content_hash():
    a = make_manifest()
    b = make_manifest()
    assert a["upload_id"] == b["upload_id"]
    c = make_manifest(files={"visible": png(9), "thermal": png(2), "heatmap": png(3)})
    assert c["upload_id"] != a["upload_id"]


MUTATIONS = [
    (lambda m: m.update(extra=1), "unknown field"),
    (lambda m: m.pop("score"), "missing field"),
    (lambda m: m.update(score=1.5), "score must lie in"),
    (lambda m: m.update(device_id="../etc"), "device_id"),
    (lambda m: m["predictions"]["fused"][0].update(box=[0.5, 0.5, 0.1, 0.1]), "box must be normalised"),
    (lambda m: m["predictions"]["fused"][0].update(class_id=7), "class_id"),
    (lambda m: m["files"]["visible"].update(sha256="xyz"), "sha256"),
    (lambda m: m.update(upload_id="0" * 64), "does not match"),
    (lambda m: m["predictions"].update(other=[]), "unknown branch"),
]


@pytest.mark.parametrize(("mutate", "message"), MUTATIONS)
def test_invalid_manifests_are_rejected_with_a_reason(mutate, message):
    m = copy.deepcopy(make_manifest())
    mutate(m)
    if message != "does not match" and "upload_id" in m:
        m["upload_id"] = wire.compute_upload_id(m)
    with pytest.raises(wire.WireError, match=message):
        wire.validate_manifest(m)


def test_file_verification():
    m = make_manifest()
    with pytest.raises(wire.WireError, match="truncated"):
        wire.verify_file(m, "visible", png(1)[:-5])
    with pytest.raises(wire.WireError, match="does not match"):
        tampered = bytearray(png(1))
        tampered[-20] ^= 0xFF
        wire.verify_file(m, "visible", bytes(tampered))
    with pytest.raises(wire.WireError, match="not valid JSON"):
        wire.parse_manifest(b"{not json")
    with pytest.raises(wire.WireError, match="neither PNG nor JPEG"):
        wire.media_type_of(b"GIF89a")


def test_deeply_nested_json_is_a_wire_error():
    with pytest.raises(wire.WireError, match="nested too deeply"):
        wire.parse_manifest(b"[" * 100000)
