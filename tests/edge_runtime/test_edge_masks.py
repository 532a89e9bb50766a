"""Segmentation on the device: each branch's mask leaves as a class-id PNG sized to the camera image
(letterbox undone), survives the spool, and reaches a real collection server."""

from __future__ import annotations

import numpy as np
import pytest

from msmine import wire
from msmine.edge_runtime.config import EdgeConfig
from msmine.edge_runtime.pipeline import EdgePipeline
from msmine.edge_runtime.spool import INDEX, Spool
from msmine.masks import decode_mask_png, encode_mask_png
from tests.edge_runtime.contract_models import CLASS_NAMES, build_contract_model

# camera frames 200 x 120 into a 160 x 120 model: letterboxed (scale 0.8, 12 rows of padding each side)
CAMERAS = "visible=synthetic?size=200x120&frames=12&seed=3,thermal=synthetic?size=200x120&frames=12&seed=3"


def cfg_for(tmp_path, model, **kw) -> EdgeConfig:
    base = dict(cameras=CAMERAS, model=str(model), spool_dir=str(tmp_path / "spool"), detections="",
                budget="2/run", decision_delay_s=float("inf"), suppression_gap_s=0.0, adaptive_threshold=False,
                buffer_size=64, device_id="pole-1", threads=1, backoff_max_s=0.2, drain_timeout_s=20.0,
                model_poll_s=0.0)
    base.update(kw)
    return EdgeConfig(**base)


@pytest.fixture(scope="module")
def seg_model(tmp_path_factory):
    return build_contract_model(tmp_path_factory.mktemp("seg") / "seg.onnx", height=120, width=160, task="segment")


def expected_fused_mask(model_path, visible_png: bytes, thermal_png: bytes) -> np.ndarray:
    """What the fused mask must be: the model run again on the uploaded images, its stride-8 class-id
    grid mapped back to the image by the shared letterbox geometry."""
    import cv2
    import onnxruntime as ort

    from msmine.feeds import to_input
    from msmine.masks import unletterbox_mask

    vis = cv2.imdecode(np.frombuffer(visible_png, np.uint8), cv2.IMREAD_COLOR)
    th = cv2.imdecode(np.frombuffer(thermal_png, np.uint8), cv2.IMREAD_GRAYSCALE)
    fv, ft = to_input(vis, th, (120, 160))
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    grid = sess.run(["fused_segmentation"], {"visible": fv[None], "thermal": ft[None]})[0][0]
    return unletterbox_mask(grid, th.shape[:2], (120, 160))


def test_spooled_segmentation_pairs_carry_masks_sized_to_the_camera_image(tmp_path, seg_model):
    summary = EdgePipeline.from_config(cfg_for(tmp_path, seg_model)).run()
    assert summary["kept"] == 2
    spool = Spool(tmp_path / "spool", 1 << 30)
    item = spool.next_pending()
    manifest, files = item.manifest, spool.read_files(item)
    assert manifest["image_size"] == [200, 120]
    assert set(manifest["masks"]) == {"fused", "visible", "thermal"}
    for branch, info in manifest["masks"].items():
        assert (info["width"], info["height"]) == (200, 120) and info["part"] == f"mask_{branch}"
        mask = decode_mask_png(files[info["part"]], expected_size=(200, 120), num_classes=len(CLASS_NAMES))
        assert set(np.unique(mask)) <= {0, 1}
    np.testing.assert_array_equal(
        decode_mask_png(files["mask_fused"]), expected_fused_mask(seg_model, files["visible"], files["thermal"]))
    spool.close()
    # the index is only an index: rebuilt from the files, the pair keeps its mask parts
    (tmp_path / "spool" / INDEX).unlink()
    again = Spool(tmp_path / "spool", 1 << 30)
    rebuilt = again.next_pending(exclude=set())
    assert again.rebuilt == 2 and set(wire.upload_parts(rebuilt.manifest)) <= set(rebuilt.parts)
    again.close()


def test_masks_reach_a_real_server(tmp_path, seg_model):
    pytest.importorskip("fastapi")
    import requests

    from tests.server.live_server import LiveServer, make_tokens

    root = tmp_path / "server"
    root.mkdir()
    tokens = make_tokens(root, ("pole-1",))
    server = LiveServer(root).start()
    try:
        summary = EdgePipeline.from_config(cfg_for(tmp_path, seg_model, server=server.url,
                                                   token=tokens["pole-1"])).run()
        assert summary["uploaded"] == 2
        team = {"Authorization": f"Bearer {tokens['team']}"}
        items = requests.get(f"{server.url}/api/v1/pairs", headers=team, timeout=10).json()["items"]
        assert len(items) == 2
        for item in items:
            uid = item["upload_id"]
            detail = requests.get(f"{server.url}/api/v1/pairs/{uid}", headers=team, timeout=10).json()
            assert set(detail["masks"]) == {"fused", "visible", "thermal"}
            got = {b: requests.get(f"{server.url}/api/v1/pairs/{uid}/masks/{b}", headers=team, timeout=10)
                   for b in detail["masks"]}
            for branch, r in got.items():
                assert r.status_code == 200 and wire.sha256_hex(r.content) == detail["masks"][branch]
                assert decode_mask_png(r.content, (200, 120), len(CLASS_NAMES)).shape == (120, 200)
            images = {p: requests.get(f"{server.url}/api/v1/pairs/{uid}/files/{p}", headers=team, timeout=10).content
                      for p in ("visible", "thermal")}
            np.testing.assert_array_equal(decode_mask_png(got["fused"].content),
                                          expected_fused_mask(seg_model, images["visible"], images["thermal"]))
    finally:
        server.stop()


def test_a_mask_outside_the_classes_is_left_out_not_refused(tmp_path):
    from msmine.edge_runtime.packaging import masks as package_masks

    class _M:
        task, class_names = "segment", ["a", "b"]

    class _P:
        thermal = np.zeros((30, 40), np.uint8)
        size = (30, 40)

    class _R:
        model, prepared = _M(), _P()
        outputs = {"fused_segmentation": np.ones((4, 5), np.int64), "visible_segmentation": np.full((4, 5), 7)}

    out = package_masks(_R())
    assert set(out) == {"fused"}
    assert out["fused"] == encode_mask_png(np.ones((30, 40), np.uint8))
