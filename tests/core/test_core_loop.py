"""The closed loop, end to end: `msmine demo` on its embedded default and `msmine simulate` in CI size."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def msmine(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "msmine.loop.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


@pytest.mark.slow
def test_demo_runs_the_whole_loop_on_the_synthetic_pair(tmp_path):
    out = msmine("demo", "--out", str(tmp_path / "demo"), "--train-steps", "25", "--train-pairs", "32",
                 "--duration", "8", "--budget", "30/min", timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    for step in range(1, 7):
        assert f"[{step}/6]" in out.stdout
    summary = next(line for line in out.stdout.splitlines() if line.startswith("pairs seen"))
    seen, kept, uploaded = (int(summary.split(word)[1].split()[0].rstrip(",")) for word in ("seen", "kept", "uploaded"))
    assert seen > 50  # 8 s of a 30 fps pair
    assert uploaded == kept >= 1  # everything kept reached the server
    report = (tmp_path / "demo" / "report.html").read_text()
    assert report.count('class="pair"') == min(uploaded, 6)
    assert "data:image/jpeg;base64," in report
    assert (tmp_path / "demo" / "model.onnx").is_file()


def test_demo_refuses_bad_arguments(tmp_path):
    out = msmine("demo", "--out", str(tmp_path), "--duration", "0", timeout=60)
    assert out.returncode == 1 and out.stderr.strip().endswith("--duration must be > 0, got 0.0")
    out = msmine("demo", "--out", str(tmp_path), "--data", str(tmp_path / "nope"), timeout=60)
    assert out.returncode == 1 and "not found" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_simulate_ci_size_on_real_msrs(tmp_path, msrs_root):
    out_dir = tmp_path / "sim"
    out = msmine("simulate", "--data", str(msrs_root), "--out", str(out_dir), "--devices", "2", "--rounds", "1",
                 "--policies", "random,inconsistency", "--seeds", "0", "--initial", "16",
                 "--pairs-per-device", "12", "--budget-per-device", "3", "--train-steps", "20",
                 "--finetune-steps", "10", "--input-size", "128,160", "--test-limit", "24",
                 "--exporter", "torchscript", timeout=900)  # 4x faster than the default dynamo export
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    rows = list(csv.DictReader((out_dir / "simulation.csv").open()))
    assert {(r["policy"], r["round"]) for r in rows} == {
        ("random", "0"), ("random", "1"), ("inconsistency", "0"), ("inconsistency", "1")}
    for row in rows:
        if row["round"] == "1":
            assert int(row["uploaded"]) == 2 * 3  # every device spent exactly its budget
            assert int(row["labelled"]) == 16 + 6  # the oracle labelled every upload
            assert int(row["uploaded_bytes"]) > 0
            assert 0.0 <= float(row["fused_AP50"]) <= 1.0
    # both policies start from the same initial model
    r0 = [r for r in rows if r["round"] == "0"]
    assert r0[0]["fused_AP50"] == r0[1]["fused_AP50"]
    assert (out_dir / "simulation.png").stat().st_size > 1000
    assert (out_dir / "report.html").is_file()


def test_simulate_refuses_bad_arguments(tmp_path, msrs_root):
    out = msmine("simulate", "--data", str(tmp_path), "--out", str(tmp_path / "o"), timeout=60)
    assert out.returncode == 1 and "expected the MSRS layout" in out.stderr
    out = msmine("simulate", "--data", str(msrs_root), "--policies", "random,psychic", timeout=60)
    assert out.returncode == 1 and "psychic" in out.stderr
    out = msmine("simulate", "--data", str(msrs_root), "--devices", "100", "--pairs-per-device", "100",
                 "--out", str(tmp_path / "o"), timeout=60)
    assert out.returncode == 1 and "needs" in out.stderr
    out = msmine("simulate", "--data", str(msrs_root), "--config", "configs/al_segment_lite0_cached.yaml",
                 "--out", str(tmp_path / "o"), timeout=60)
    assert out.returncode == 1 and "a segment recipe, but the simulation's --task is detect" in out.stderr
    assert "Traceback" not in out.stderr


def test_simulate_config_is_written_as_a_training_recipe(tmp_path):
    """--config takes a training YAML as it is and an active-learning YAML's train section; what
    every msmine train of the simulation gets is a TrainConfig file with the recipe's values."""
    from msmine.config import load_config
    from msmine.errors import UserError
    from msmine.loop.simulate import training_recipe
    from msmine.train.config import TrainConfig

    written = training_recipe(ROOT / "configs" / "al_detect_lite0_cached.yaml", "detect", tmp_path / "a")
    cfg = load_config(TrainConfig, written)
    assert (cfg.model.backbone, cfg.model.freeze_stages, cfg.data.feature_cache_mb) == ("lite0", 7, 6144)
    assert cfg.optim.warmup_steps == 30 and cfg.data.crop is False
    cfg = load_config(TrainConfig, training_recipe(ROOT / "configs" / "segment_lite0.yaml", "segment", tmp_path / "b"))
    assert cfg.model.task == "segment" and cfg.model.backbone == "lite0"
    with pytest.raises(UserError, match="a detect recipe, but the simulation's --task is segment"):
        training_recipe(ROOT / "configs" / "detect_lite0.yaml", "segment", tmp_path / "c")
    with pytest.raises(UserError, match="not found"):
        training_recipe(tmp_path / "missing.yaml", "detect", tmp_path / "d")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  model:\n    backbone: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        training_recipe(bad, "detect", tmp_path / "e")
    bad.write_text("train:\n  modle: {}\n")
    with pytest.raises(UserError):
        training_recipe(bad, "detect", tmp_path / "f")


@pytest.mark.slow
def test_simulate_segment_masks_through_the_whole_loop(tmp_path, msrs_root):
    """--task segment on real MSRS pairs, smallest sizes: the device's masks reach the server, the
    oracle's ground-truth masks go in through the label import as masks, the pull writes
    segmentation/<id>.png, and the retrained segmentation model is evaluated (fused mIoU)."""
    import cv2
    import numpy as np

    out_dir = tmp_path / "sim"
    args = ("--task", "segment", "--data", str(msrs_root), "--out", str(out_dir), "--devices", "1",
                "--rounds", "1", "--policies", "inconsistency", "--seeds", "0", "--initial", "4",
                "--pairs-per-device", "4", "--budget-per-device", "2", "--train-steps", "2", "--finetune-steps", "2",
                "--input-size", "64,80", "--test-limit", "4", "--exporter", "torchscript", "--set", "batch_size=2")
    out = subprocess.run([sys.executable, "-m", "msmine.loop.cli", "simulate", *args], capture_output=True,
                         text=True, cwd=ROOT, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "fused mIoU" in out.stdout
    rows = list(csv.DictReader((out_dir / "simulation.csv").open()))
    assert [(r["policy"], r["round"]) for r in rows] == [("inconsistency", "0"), ("inconsistency", "1")]
    r1 = rows[1]
    assert int(r1["uploaded"]) == 2 and int(r1["labelled"]) == 4 + 2
    assert int(r1["uploaded_masks"]) == 2  # every uploaded pair carries the device's fused mask
    assert int(r1["labelled_masks"]) == 2  # the import stored a mask label set per uploaded pair
    assert "fused_AP50" not in r1
    for row in rows:
        assert 0.0 <= float(row["fused_mIoU"]) <= 1.0
    # the pulled set: segmentation/<upload_id>.png equal to the MSRS ground truth of the streamed pairs
    pulled = out_dir / "seed0" / "inconsistency" / "round1" / "pulled"
    masks = sorted((pulled / "train" / "segmentation").glob("*.png"))
    assert len(masks) == 2 and not (pulled / "train" / "labels").exists()
    gt_dir = msrs_root / "train" / "segmentation"
    streamed = sorted(p.stem for p in (out_dir / "seed0" / "inconsistency" / "round1" / "device0" / "train"
                                       / "visible").iterdir())
    truth = [cv2.imread(str(gt_dir / f"{pid}.png"), cv2.IMREAD_UNCHANGED) for pid in streamed]
    for path in masks:
        got = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert any(got.shape == t.shape and np.array_equal(got, t) for t in truth), path.name
    # the retrained model (fine-tuned from round 0 on initial + pulled) was evaluated on the test split
    metrics = json.loads((out_dir / "seed0" / "inconsistency" / "round1" / "model"
                                        / "test_metrics.json").read_text())
    assert metrics["task"] == "segment" and "mIoU" in metrics["metrics"]["fused"]["all"]
    assert (out_dir / "seed0" / "inconsistency" / "round1" / "train_data" / "train" / "segmentation").is_dir()
    assert (out_dir / "simulation.png").stat().st_size > 1000
    assert "(segmentation)" in (out_dir / "report.html").read_text()
