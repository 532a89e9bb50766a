"""One preprocessing (msmine.feeds): the device, calibration, the INT8 reader, the fidelity gate and
bench_edge make the same model input from the same pair + registration; `msmine calibrate
threshold` takes the device's camera-pair sources and --registration, and its threshold.yaml is
what `edge-runtime --threshold-file` reads."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import yaml

from msmine.calibration.onnx_scoring import score_pairs
from msmine.calibration.pairs import iter_pairs, to_model_inputs
from msmine.calibration_files import load_threshold
from msmine.edge_runtime.cameras import Frame
from msmine.edge_runtime.config import EdgeConfig, apply_threshold_file
from msmine.edge_runtime.packaging import prepare
from msmine.edge_runtime.pairing import Pair
from msmine.edge_runtime.registration import load_warp
from msmine.errors import UserError
from msmine.loop.cli import main
from msmine.model_contract import build_contract_model, expected_inconsistency

REPO = Path(__file__).resolve().parents[2]
INPUT = (120, 160)  # (H, W) of the model
VIS_SIZE, TH_SIZE = (320, 256), (200, 160)  # (W, H): different sizes and aspect ratios


def _pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(visible BGR 256x320x3, thermal grey 160x200) with structure and colour (channel order matters)."""
    rng = np.random.default_rng(seed)
    h, w = VIS_SIZE[1], VIS_SIZE[0]
    yy, xx = np.mgrid[0:h, 0:w]
    vis = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], axis=-1).astype(np.uint8)
    vis = cv2.add(vis, rng.integers(0, 40, vis.shape, dtype=np.uint8))
    cv2.rectangle(vis, (40, 50), (120, 200), (10, 200, 30), -1)
    th = rng.integers(0, 60, (TH_SIZE[1], TH_SIZE[0]), dtype=np.uint8)
    cv2.circle(th, (120, 80), 30, 230, -1)
    return vis, th


@pytest.fixture
def registration(tmp_path):
    """A visible->thermal homography that is neither the identity nor a pure resize."""
    sx, sy = TH_SIZE[0] / VIS_SIZE[0], TH_SIZE[1] / VIS_SIZE[1]
    hom = np.array([[sx * 1.05, 0.02, 6.0], [-0.01, sy * 1.03, -4.0], [0.0, 0.0, 1.0]])
    path = tmp_path / "registration.yaml"
    path.write_text(yaml.safe_dump({
        "homography": hom.tolist(), "direction": "visible_to_thermal",
        "image_size": {"visible": list(VIS_SIZE), "thermal": list(TH_SIZE)}, "rms_px": 0.3, "method": "points",
    }))
    return path


def _device(vis_bgr, th, warp):
    frame_v, frame_t = Frame("visible", 0, 0.0, 0.0, vis_bgr), Frame("thermal", 0, 0.0, 0.0, th)
    prep = prepare(Pair(0, frame_v, frame_t), INPUT, warp)
    return prep.feed_visible[None], prep.feed_thermal[None]


class RecordingSession:
    """Stands in for an onnxruntime session: records the inputs, returns contract-shaped outputs."""

    def __init__(self):
        self.inputs: list[dict[str, np.ndarray]] = []

    def get_outputs(self):
        return [SimpleNamespace(name=n) for n in ("inconsistency", "fused_detections")]

    def run(self, names, feeds):
        self.inputs.append({k: v.copy() for k, v in feeds.items()})
        n = feeds["visible"].shape[0]
        out = {"inconsistency": np.zeros(n, np.float32), "fused_detections": np.zeros((n, 4, 6), np.float32)}
        return [out[k] for k in names]


def test_device_and_calibration_make_the_same_input_with_registration(registration):
    vis, th = _pair()
    warp = load_warp(registration)
    dev_v, dev_t = _device(vis, th, warp)
    assert dev_v.shape == (1, *INPUT, 3) and dev_t.shape == (1, *INPUT, 1)

    calib = to_model_inputs(vis[:, :, ::-1].copy(), th[:, :, None], INPUT, warp)  # calibration reads RGB
    np.testing.assert_array_equal(calib["visible"], dev_v)
    np.testing.assert_array_equal(calib["thermal"], dev_t)

    session = RecordingSession()  # what `msmine calibrate threshold --registration` feeds the model
    score_pairs(session, INPUT, [("p", vis[:, :, ::-1].copy(), th[:, :, None])], warp=warp)
    np.testing.assert_array_equal(session.inputs[0]["visible"], dev_v)
    np.testing.assert_array_equal(session.inputs[0]["thermal"], dev_t)

    # the registration matters: without it, the input is another one
    assert not np.array_equal(to_model_inputs(vis[:, :, ::-1].copy(), th, INPUT)["visible"], dev_v)


def test_fidelity_gate_and_int8_reader_feed_like_the_device(tmp_path):
    from msmine.calibration.int8_reader import calibration_batches
    from msmine.export.fidelity import FidelityConfig, _run_models

    vis, th = _pair(1)
    dev_v, dev_t = _device(vis, th, None)
    sample = SimpleNamespace(visible=vis[:, :, ::-1].copy(), thermal=th[:, :, None],
                             boxes={"fused": np.zeros((0, 4))}, labels={"fused": np.zeros(0)})
    session = RecordingSession()
    _run_models([session], [sample], INPUT, FidelityConfig(batch_size=4), "detect")
    np.testing.assert_array_equal(session.inputs[0]["visible"], dev_v)
    np.testing.assert_array_equal(session.inputs[0]["thermal"], dev_t)

    for sub, img in (("visible", vis), ("infrared", th)):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "a.png"), img)
    (batch,) = calibration_batches(tmp_path, INPUT, limit=1)
    np.testing.assert_array_equal(batch["visible"], dev_v)
    np.testing.assert_array_equal(batch["thermal"], dev_t)


def test_bench_edge_reference_feeds_like_the_device():
    spec = importlib.util.spec_from_file_location("bench_edge", REPO / "bench" / "bench_edge.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    vis, th = _pair(2)
    dev_v, dev_t = _device(vis, th, None)
    got_v, got_t = bench.model_feeds([cv2.cvtColor(vis, cv2.COLOR_BGR2RGB)], [th[:, :, None]], INPUT)
    np.testing.assert_array_equal(np.stack(got_v), dev_v)
    np.testing.assert_array_equal(np.stack(got_t), dev_t)


def _write_folders(root: Path, names=("Visible", "Infrared"), n: int = 3) -> tuple[Path, Path]:
    vis_dir, th_dir = root / names[0], root / names[1]
    vis_dir.mkdir(parents=True)
    th_dir.mkdir(parents=True)
    for i in range(n):
        vis, th = _pair(10 + i)
        cv2.imwrite(str(vis_dir / f"{i:04d}.jpg"), vis, [cv2.IMWRITE_JPEG_QUALITY, 100])
        cv2.imwrite(str(th_dir / f"{i:04d}.png"), th)
    cv2.imwrite(str(th_dir / "9999.png"), th)  # no visible partner: left out, never paired by position
    return vis_dir, th_dir


def test_cli_threshold_scores_camera_pair_folders_with_the_registration(tmp_path, registration, capsys):
    vis_dir, th_dir = _write_folders(tmp_path / "llvip")
    model = build_contract_model(tmp_path / "m.onnx", height=INPUT[0], width=INPUT[1], levels=2, k=4)
    scores_csv, out = tmp_path / "scores.csv", tmp_path / "threshold.yaml"
    rc = main(["calibrate", "threshold", "--model", str(model), "--source", f"visible={vis_dir},thermal={th_dir}",
               "--registration", str(registration), "--target-rate", "1/s", "--fps", "10",
               "--save-scores", str(scores_csv), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    rows = [line.split(",") for line in scores_csv.read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == ["0000", "0001", "0002"]
    warp = load_warp(registration)
    for pair_id, score in rows:
        vis = cv2.imread(str(vis_dir / f"{pair_id}.jpg"))
        th = cv2.imread(str(th_dir / f"{pair_id}.png"), cv2.IMREAD_GRAYSCALE)
        dev_v, dev_t = _device(vis, th, warp)  # the score the device would compute for this pair
        assert float(score) == pytest.approx(expected_inconsistency(dev_v, dev_t), abs=1e-6)

    # the device reads what calibration wrote
    written = load_threshold(out)
    assert written.score_key == "inconsistency" and written.n_scores == 3 and str(registration) in written.source
    cfg = apply_threshold_file(EdgeConfig(threshold_file=str(out)))
    assert cfg.threshold == written.threshold and cfg.adaptive_threshold is False
    with pytest.raises(UserError, match="calibrated on 'inconsistency'"):
        apply_threshold_file(EdgeConfig(threshold_file=str(out), score="entropy"))


def test_llvip_root_and_capitalised_folders_are_sources(tmp_path):
    root = tmp_path / "LLVIP"
    _write_folders(root, ("Visible/test", "Infrared/test"), n=2)
    ids = [pair_id for pair_id, _, _ in iter_pairs(root, split="test")]
    assert ids == ["0000", "0001"]
    flat = tmp_path / "flat"
    _write_folders(flat, ("VISIBLE", "thermal"), n=2)
    assert [p for p, _, _ in iter_pairs(flat)] == ["0000", "0001"]


def test_camera_pair_sources_refused_with_one_line(tmp_path):
    vis_dir, _ = _write_folders(tmp_path / "f", n=1)
    with pytest.raises(UserError, match="recorded pairs"):
        list(iter_pairs(f"visible={vis_dir},thermal=synthetic"))
    clip = REPO.parent / "shared" / "data" / "m3svd" / "0113_1714"
    if clip.is_dir():
        with pytest.raises(UserError, match="must be video files or both image folders"):
            list(iter_pairs(f"visible={clip / 'visible.mp4'},thermal={vis_dir}"))
    with pytest.raises(UserError, match="bad --source"):
        list(iter_pairs("visible=a.mp4"))


@pytest.mark.parametrize("content, message", [
    ("nothing: here\n", "must hold a mapping with a threshold"),
    ("threshold: .nan\n", "must be finite"),
    ("threshold: high\n", "must be a number"),
    ("threshold: 0.1\nn_scores: -3\n", "n_scores"),
    (": [\n", "not valid YAML"),
])
def test_threshold_file_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "thr.yaml"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_threshold(path)
    with pytest.raises(UserError, match="not found"):
        load_threshold(tmp_path / "missing.yaml")


def test_folders_pair_by_name_like_the_device(tmp_path, caplog):
    """Calibration pairs two folders with the device's own matcher (msmine.sources.match_folders):
    camera words in the names are ignored, files without a partner are left out, never paired by position."""
    from msmine.edge_runtime import cameras

    vis_dir, th_dir = tmp_path / "v", tmp_path / "t"
    vis_dir.mkdir()
    th_dir.mkdir()
    for i in (1, 2, 4):
        vis, th = _pair(20 + i)
        cv2.imwrite(str(vis_dir / f"{i:04d}_vis.png"), vis)
        if i != 2:
            cv2.imwrite(str(th_dir / f"{i:04d}_ir.png"), th)
    got = [(pid, t[:, :, 0]) for pid, _, t in iter_pairs(f"visible={vis_dir},thermal={th_dir}")]
    assert [pid for pid, _ in got] == ["0001_vis", "0004_vis"]
    np.testing.assert_array_equal(got[1][1], cv2.imread(str(th_dir / "0004_ir.png"), cv2.IMREAD_GRAYSCALE))
    assert cameras.match_folders is __import__("msmine.sources", fromlist=["x"]).match_folders


def test_edge_runtime_runs_on_the_calibrated_threshold(tmp_path):
    """`edge-runtime --threshold-file`: the run's threshold is the file's, fixed (no adaptation)."""
    from msmine.edge_runtime.pipeline import EdgePipeline

    model = build_contract_model(tmp_path / "m.onnx", height=120, width=160, levels=2, k=4)
    thr = tmp_path / "threshold.yaml"
    thr.write_text(yaml.safe_dump({"threshold": 0.75, "score_key": "inconsistency"}))
    cams = "visible=synthetic?size=160x120&frames=30&seed=2,thermal=synthetic?size=160x120&frames=30&seed=2"
    cfg = EdgeConfig(cameras=cams, model=str(model), spool_dir=str(tmp_path / "spool"), detections="",
                     device_id="t", budget="1000/run", threshold_file=str(thr), suppression_gap_s=0.0)
    summary = EdgePipeline.from_config(cfg).run()
    assert summary["pairs"] == 30
    assert summary["threshold"] == pytest.approx(0.75)  # not adapted down to the stream's scores
    assert summary["kept"] == 0  # every synthetic score lies below 0.75
