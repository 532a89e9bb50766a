"""Camera-pair registration: known homographies recovered on real MSRS pairs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from msmine.calibration.register import (
    RegisterConfig,
    homography_from_points,
    load_correspondences,
    read_image,
    register_by_ecc,
    register_from_points,
    register_from_target,
)
from msmine.calibration.registration_io import (
    Registration,
    apply_registration,
    corner_rms,
    load_registration,
    save_registration,
    transform_points,
)
from msmine.errors import UserError

# a realistic visible->thermal homography: shift, small rotation/scale, a little perspective
H_TRUE = np.array([[1.02, 0.015, 6.0], [-0.01, 1.01, -4.0], [2e-5, 1e-5, 1.0]])
PAIR_IDS = ["00004N", "00427D", "01098N"]


def _pair(msrs_root, pair_id):
    vis = read_image(msrs_root / "test" / "visible" / f"{pair_id}.jpg")
    th = read_image(msrs_root / "test" / "infrared" / f"{pair_id}.jpg", gray=True)
    return vis, th


def _checkerboard(squares=(10, 7), square_px=28) -> np.ndarray:
    rows, cols = squares[1], squares[0]
    board = np.kron((np.add.outer(np.arange(rows), np.arange(cols)) % 2) * 255,
                    np.ones((square_px, square_px))).astype(np.uint8)
    return np.pad(board, square_px // 2 + 4, constant_values=255)


def _paste(img: np.ndarray, patch: np.ndarray, x: int, y: int) -> np.ndarray:
    out = img.copy()
    h, w = patch.shape[:2]
    out[y:y + h, x:x + w] = patch if patch.ndim == out.ndim else patch[:, :, None]
    return out


@pytest.mark.realdata
@pytest.mark.parametrize("pair_id", PAIR_IDS)
def test_ecc_recovers_known_homography_on_real_image(msrs_root, pair_id):
    """A real thermal frame warped by a known homography is registered back to < 1 px corner RMS."""
    _, th = _pair(msrs_root, pair_id)
    h, w = th.shape
    warped = cv2.warpPerspective(th, H_TRUE, (w, h))
    reg = register_by_ecc(th, warped, RegisterConfig())
    assert reg.method == "ecc"
    assert corner_rms(reg.homography, H_TRUE, w, h) < 1.0
    assert corner_rms(np.eye(3), H_TRUE, w, h) > 10  # the identity is far off: it is a real recovery


@pytest.mark.realdata
@pytest.mark.parametrize("pair_id", PAIR_IDS[:2])
def test_heated_checkerboard_in_real_pair_recovered(msrs_root, pair_id):
    """A checkerboard in a real visible frame and, inverted (heated), in the real thermal frame
    warped by a known homography: detection + homography + ECC recover it to < 1 px."""
    vis, th = _pair(msrs_root, pair_id)
    h, w = th.shape
    board = _checkerboard()
    vis_t = _paste(vis, board, 180, 120)
    th_t = cv2.warpPerspective(_paste(th, 255 - board, 180, 120), H_TRUE, (w, h))
    reg = register_from_target(vis_t, th_t, RegisterConfig(target="checkerboard", pattern=(9, 6)))
    assert "inverted" in reg.method
    assert reg.rms_px < 0.5
    assert corner_rms(reg.homography, H_TRUE, w, h) < 1.0


@pytest.mark.realdata
def test_cross_modality_refinement_never_drifts(msrs_root):
    """Cross-modality ECC on an ordinary scene is weak: a drifting refinement must be rejected."""
    vis, th = _pair(msrs_root, PAIR_IDS[1])
    h, w = th.shape
    warped = cv2.warpPerspective(th, H_TRUE, (w, h))
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)
    noisy = transform_points(corners, H_TRUE) + np.array([[1.5, -1.0], [-1.0, 1.0], [0.5, 1.5], [-1.5, -0.5]])
    cfg = RegisterConfig(max_refine_shift_px=3.0)
    reg = register_from_points(corners, noisy, (w, h), (w, h), vis, warped, cfg)
    init, _ = homography_from_points(corners, noisy)
    assert corner_rms(reg.homography, init, w, h) <= cfg.max_refine_shift_px + 1e-6


def test_points_round_trip_and_files(tmp_path):
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 600, size=(12, 2))
    dst = transform_points(src, H_TRUE)
    csv_path = tmp_path / "pts.csv"
    csv_path.write_text("vx,vy,tx,ty\n" + "\n".join(",".join(f"{v:.6f}" for v in (*s, *d)) for s, d in zip(src, dst)))
    a, b = load_correspondences(csv_path)
    hom, rms = homography_from_points(a, b)
    assert rms < 1e-3 and corner_rms(hom, H_TRUE, 640, 480) < 1e-3
    yaml_path = tmp_path / "pts.yaml"
    yaml_path.write_text(f"visible: {src.tolist()}\nthermal: {dst.tolist()}\n")
    a2, b2 = load_correspondences(yaml_path)
    np.testing.assert_allclose(a2, src)
    np.testing.assert_allclose(b2, dst)


@pytest.mark.parametrize(
    "content, suffix, match",
    [
        ("vx,vy,tx,ty\n1,2,3\n", ".csv", "expected 4 numbers"),
        ("1,2,3,4\n1,x,3,4\n", ".csv", "expected 4 numbers"),
        ("visible: [[1, 2]]\nthermal: [[1, 2], [3, 4]]\n", ".yaml", "1 visible points but 2"),
        ("foo: 1\n", ".yaml", "expected keys"),
        ("1 2 3 4", ".txt", "expected a .csv"),
    ],
)
def test_bad_correspondence_files(tmp_path, content, suffix, match):
    path = tmp_path / f"pts{suffix}"
    path.write_text(content)
    with pytest.raises(UserError, match=match):
        load_correspondences(path)


def test_too_few_points():
    with pytest.raises(UserError, match="at least 4"):
        homography_from_points(np.zeros((3, 2)), np.zeros((3, 2)))


def test_registration_yaml_round_trip_and_apply(tmp_path):
    reg = Registration(H_TRUE, (640, 480), (640, 480), 0.3, "points")
    path = save_registration(reg, tmp_path / "reg.yaml")
    back = load_registration(path)
    np.testing.assert_allclose(back.homography, H_TRUE / H_TRUE[2, 2])
    assert back.thermal_size == (640, 480) and back.method == "points" and back.rms_px == pytest.approx(0.3)
    img = np.zeros((480, 640, 3), np.uint8)
    img[200:210, 300:310] = 255
    out = apply_registration(img, back)
    assert out.shape == img.shape
    ys, xs = np.nonzero(out[:, :, 0] > 127)
    centre = transform_points(np.array([[304.5, 204.5]]), H_TRUE)[0]
    assert abs(xs.mean() - centre[0]) < 1.0 and abs(ys.mean() - centre[1]) < 1.0
    # a half-resolution frame is rescaled to the estimate's resolution first
    half = apply_registration(cv2.resize(img, (320, 240), interpolation=cv2.INTER_NEAREST), back)
    assert half.shape == img.shape


@pytest.mark.parametrize(
    "content, match",
    [
        ("homography: [[1, 0], [0, 1]]\ndirection: visible_to_thermal\nimage_size: {visible: [4, 4], thermal: [4, 4]}\n",
         "3x3"),
        ("homography: [[1,0,0],[0,1,0],[0,0,1]]\ndirection: thermal_to_visible\n"
         "image_size: {visible: [4, 4], thermal: [4, 4]}\n", "direction"),
        ("homography: [[1,0,0],[0,1,0],[0,0,1]]\ndirection: visible_to_thermal\n", "lacks key"),
        ("homography: [[0,0,0],[0,0,0],[0,0,1]]\ndirection: visible_to_thermal\n"
         "image_size: {visible: [4, 4], thermal: [4, 4]}\n", "singular"),
        ("[unclosed\n", "not valid YAML"),
    ],
)
def test_bad_registration_files(tmp_path, content, match):
    path = tmp_path / "reg.yaml"
    path.write_text(content)
    with pytest.raises(UserError, match=match):
        load_registration(path)


def test_missing_registration_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_registration(tmp_path / "nope.yaml")


@pytest.mark.realdata
def test_target_with_lower_resolution_thermal(msrs_root):
    """A 320x240 thermal camera beside a 640x480 visible one: the homography includes the scale."""
    vis, th = _pair(msrs_root, PAIR_IDS[0])
    h, w = th.shape
    board = _checkerboard()
    vis_t = _paste(vis, board, 150, 150)
    th_full = cv2.warpPerspective(_paste(th, 255 - board, 150, 150), H_TRUE, (w, h))
    th_small = cv2.resize(th_full, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    expected = np.diag([0.5, 0.5, 1.0]) @ H_TRUE
    reg = register_from_target(vis_t, th_small, RegisterConfig())
    assert reg.visible_size == (640, 480) and reg.thermal_size == (320, 240)
    assert corner_rms(reg.homography, expected, w, h) < 1.0
    warped = apply_registration(vis_t, reg)
    assert warped.shape[:2] == (240, 320)


def _circle_grid(cols=5, rows=4, spacing=40, radius=10) -> np.ndarray:
    img = np.full((rows * spacing + spacing, cols * spacing + spacing), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            cv2.circle(img, (spacing + c * spacing, spacing + r * spacing), radius, 0, -1, cv2.LINE_AA)
    return img


@pytest.mark.realdata
def test_circle_grid_target(msrs_root):
    vis, th = _pair(msrs_root, PAIR_IDS[1])
    h, w = th.shape
    grid = _circle_grid()
    vis_t = _paste(vis, grid, 200, 150)
    th_t = cv2.warpPerspective(_paste(th, 255 - grid, 200, 150), H_TRUE, (w, h))  # warm discs on a cold board
    reg = register_from_target(vis_t, th_t, RegisterConfig(target="circles", pattern=(5, 4)))
    assert reg.method.startswith("circles")
    assert corner_rms(reg.homography, H_TRUE, w, h) < 1.0


@pytest.mark.realdata
def test_cli_register_ecc_only(msrs_root, tmp_path):
    from msmine.loop.cli import main

    th = read_image(msrs_root / "test" / "infrared" / "00004N.jpg", gray=True)
    h, w = th.shape
    cv2.imwrite(str(tmp_path / "v.png"), th)
    cv2.imwrite(str(tmp_path / "t.png"), cv2.warpPerspective(th, H_TRUE, (w, h)))
    out = tmp_path / "reg.yaml"
    assert main(["calibrate", "register", "--visible", str(tmp_path / "v.png"), "--thermal", str(tmp_path / "t.png"),
                 "--ecc-only", "--out", str(out)]) == 0
    reg = load_registration(out)
    assert reg.method == "ecc" and np.isnan(reg.rms_px)
    assert corner_rms(reg.homography, H_TRUE, w, h) < 1.0


@pytest.mark.realdata
def test_ecc_only_refuses_an_ordinary_cross_modality_scene(msrs_root, tmp_path, capsys):
    """Visible vs thermal scenes share too little gradient structure: ECC alone must not guess."""
    from msmine.loop.cli import main

    vis = msrs_root / "test" / "visible" / "00004N.jpg"
    th = msrs_root / "test" / "infrared" / "00004N.jpg"
    assert main(["calibrate", "register", "--visible", str(vis), "--thermal", str(th), "--ecc-only",
                 "--out", str(tmp_path / "r.yaml")]) == 1
    assert "gradient correlation" in capsys.readouterr().err
    assert not (tmp_path / "r.yaml").exists()
