"""The edge runtime's own uploader and model fetcher against a real server (the wire contract end to end).
Skipped when the edge_runtime package is not in this checkout."""

from __future__ import annotations

import hashlib

import pytest
import requests

from tests.server.live_server import LiveServer, make_tokens
from tests.server.upload_helpers import manifest_for, msrs_files, msrs_predictions

pytestmark = pytest.mark.timeout(120)


def test_edge_uploader_and_model_fetcher(tmp_path, msrs_root):
    uploader_mod = pytest.importorskip("msmine.edge_runtime.uploader", reason="edge_runtime not in this checkout")
    spool_mod = pytest.importorskip("msmine.edge_runtime.spool")
    update_mod = pytest.importorskip("msmine.edge_runtime.model_update")
    root = tmp_path / "srv"
    tokens = make_tokens(root, ("pole-1",))
    server = LiveServer(root, ("--rate-limit", "0")).start()
    try:
        spool = spool_mod.Spool(tmp_path / "spool", max_bytes=50 << 20)
        ids = []
        for i, name in enumerate(("00001D", "00002D", "00003N")):
            files = msrs_files(msrs_root, name)
            m = manifest_for(files, score=0.5 + 0.1 * i, image_size=(640, 480),
                             predictions=msrs_predictions(msrs_root, name))
            assert spool.put(m, files)
            ids.append(m["upload_id"])
        up = uploader_mod.Uploader(spool, server.url, tokens["pole-1"], backoff_max_s=1.0)
        up.start()
        try:
            assert up.drain(60.0)
        finally:
            up.stop()  # (no join: Uploader shadows Thread._stop with an Event, reported to its owner)
        assert up.uploaded == 3 and up.rejected == 0
        team = {"Authorization": f"Bearer {tokens['team']}"}
        listed = requests.get(server.url + "/api/v1/pairs", headers=team, timeout=10).json()
        assert [i["upload_id"] for i in listed["items"]] == ids[::-1]
        model = b"\x08\x09fake-onnx" * 500
        resp = requests.post(server.url + "/api/v1/models", headers=team, timeout=10,
                             files={"file": ("m.onnx", model)}, data={"version": "v7", "metadata": "{}"})
        assert resp.status_code == 201
        fetcher = update_mod.ModelFetcher(server.url, tokens["pole-1"], tmp_path / "models")
        record = fetcher.latest()
        assert record["version"] == "v7" and record["sha256"] == hashlib.sha256(model).hexdigest()
        assert fetcher.download(record).read_bytes() == model
        spool.close()
    finally:
        server.stop()
