"""The optional registration warp (visible -> thermal grid) from `msmine calibrate register`'s YAML."""

import cv2
import numpy as np
import pytest
import yaml

from msmine.edge_runtime.config import EdgeConfig
from msmine.edge_runtime.pipeline import EdgePipeline
from msmine.edge_runtime.registration import load_warp
from msmine.errors import UserError

SHIFT = [[1.0, 0.0, 10.0], [0.0, 1.0, 5.0], [0.0, 0.0, 1.0]]


def write_reg(path, hom=SHIFT, size=(160, 120)):
    path.write_text(yaml.safe_dump({"homography": hom, "direction": "visible_to_thermal",
                                    "image_size": {"visible": list(size), "thermal": list(size)},
                                    "rms_px": 0.3, "method": "points"}))
    return path


def test_warp_moves_the_visible_frame_into_the_thermal_grid(tmp_path):
    warp = load_warp(write_reg(tmp_path / "reg.yaml"))
    img = np.zeros((120, 160, 3), np.uint8)
    img[20, 30] = 255
    out = warp(img)
    assert out.shape == (120, 160, 3)
    assert tuple(np.argwhere(out[..., 0] == 255)[0]) == (25, 40)


def test_no_registration_and_bad_files(tmp_path):
    assert load_warp("") is None
    with pytest.raises(UserError, match="registration file not found"):
        load_warp(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("homography: [[1, 2], [3, 4]]\n")
    with pytest.raises(UserError, match=str(bad)):
        load_warp(bad)


def test_pipeline_with_registration(tmp_path, small_model):
    cfg = EdgeConfig(cameras="visible=synthetic?size=160x120&frames=20,thermal=synthetic?size=160x120&frames=20",
                     model=str(small_model), spool_dir=str(tmp_path / "spool"), detections="", budget="2/run",
                     decision_delay_s=float("inf"), suppression_gap_s=0.0, registration=str(write_reg(tmp_path / "reg.yaml")))
    summary = EdgePipeline.from_config(cfg).run()
    assert summary["pairs"] == 20 and summary["kept"] == 2
    for path in (tmp_path / "spool" / "items").glob("*.visible"):  # the uploaded visible image is the warped one
        img = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (120, 160, 3)
        assert img[:, :10].max() == 0 and img[:5].max() == 0 and img[20:, 20:].max() > 0
