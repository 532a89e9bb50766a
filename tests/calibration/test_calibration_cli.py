"""``msmine calibrate register`` end to end on a real MSRS pair."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from msmine.calibration.register import read_image
from msmine.calibration.registration_io import corner_rms, load_registration
from msmine.loop.cli import main
from tests.calibration.test_calibration_register import H_TRUE, _checkerboard, _paste


@pytest.fixture()
def target_pair(msrs_root, tmp_path):
    vis = read_image(msrs_root / "test" / "visible" / "00427D.jpg")
    th = read_image(msrs_root / "test" / "infrared" / "00427D.jpg", gray=True)
    h, w = th.shape
    board = _checkerboard()
    cv2.imwrite(str(tmp_path / "v.png"), _paste(vis, board, 200, 100)[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "t.png"), cv2.warpPerspective(_paste(th, 255 - board, 200, 100), H_TRUE, (w, h)))
    return tmp_path / "v.png", tmp_path / "t.png"


@pytest.mark.realdata
def test_cli_register_target(target_pair, tmp_path, capsys):
    vis, th = target_pair
    out = tmp_path / "reg.yaml"
    assert main(["calibrate", "register", "--visible", str(vis), "--thermal", str(th), "--pattern", "9x6",
                 "--out", str(out)]) == 0
    reg = load_registration(out)
    assert corner_rms(reg.homography, H_TRUE, 640, 480) < 1.0
    assert reg.method.endswith("+ecc") and "rms" in capsys.readouterr().out


@pytest.mark.realdata
def test_cli_register_points(target_pair, tmp_path):
    vis, th = target_pair
    src = np.array([[10, 10], [600, 20], [620, 470], [30, 460], [320, 240]], dtype=float)
    dst = cv2.perspectiveTransform(src[None], H_TRUE)[0]
    pts = tmp_path / "pts.csv"
    pts.write_text("vx,vy,tx,ty\n" + "".join(f"{a},{b},{c},{d}\n" for (a, b), (c, d) in zip(src, dst)))
    out = tmp_path / "reg.yaml"
    assert main(["calibrate", "register", "--visible", str(vis), "--thermal", str(th), "--points", str(pts),
                 "--no-refine", "--out", str(out)]) == 0
    reg = load_registration(out)
    assert reg.method == "points" and corner_rms(reg.homography, H_TRUE, 640, 480) < 1e-3


@pytest.mark.realdata
def test_cli_register_errors(msrs_root, tmp_path, capsys):
    vis = msrs_root / "test" / "visible" / "00427D.jpg"
    th = msrs_root / "test" / "infrared" / "00427D.jpg"
    assert main(["calibrate", "register", "--visible", str(vis), "--thermal", str(th), "--out",
                 str(tmp_path / "r.yaml")]) == 1
    assert "not found in the visible image" in capsys.readouterr().err
    assert main(["calibrate", "register", "--visible", str(tmp_path / "x.png"), "--thermal", str(th)]) == 1
    assert "image not found" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["calibrate", "register", "--visible", str(bad), "--thermal", str(th)]) == 1
    assert "cannot decode" in capsys.readouterr().err
