"""Each checked-in EfficientNet-Lite recipe, tiny, end to end on real pairs: `msmine train` 2 steps
on 8 MSRS train pairs at 64x96, `msmine export` (fp32, parity gate on real test pairs), then
`edge-runtime` on 4 real pairs (a folder of visible/infrared images)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from msmine.loop.cli import main

pytestmark = pytest.mark.realdata
REPO = Path(__file__).resolve().parents[2]
RECIPES = ["detect_lite0", "segment_lite0"]


@pytest.fixture(scope="module")
def pair_folder(msrs_root, tmp_path_factory):
    """4 real MSRS pairs as a camera-folder pair (links, nothing copied)."""
    root = tmp_path_factory.mktemp("pairs")
    ids = sorted(p.stem for p in (msrs_root / "train" / "visible").iterdir())[100:104]
    for cam in ("visible", "infrared"):
        (root / cam).mkdir()
        for i in ids:
            (root / cam / f"{i}.jpg").symlink_to(msrs_root / "train" / cam / f"{i}.jpg")
    return root


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains_exports_and_runs_on_the_device(recipe, msrs_root, pair_folder, tmp_path, one_thread):
    from msmine.model_contract import read_onnx_metadata

    config = REPO / "configs" / f"{recipe}.yaml"
    run = tmp_path / "run"
    rc = main(["train", "--data", str(msrs_root), "--config", str(config), "--out", str(run), "--device", "cpu",
               "--set", "max_steps=2", "--set", "model.input_size=[64,96]", "--set", "batch_size=4",
               "--set", "data.limit=8", "--set", "data.val_split="])
    assert rc == 0
    report = json.loads((run / "metrics.json").read_text())
    assert report["steps"] == 2 and report["train_pairs"] == 8 and math.isfinite(report["final_loss"])

    onnx_path = tmp_path / "model.onnx"
    # the TorchScript exporter: the dynamo one takes ~85 s of CPU for a Lite model (docs/export.md)
    rc = main(["export", str(run / "best.pt"), "--out", str(onnx_path), "--calib-data", str(msrs_root),
               "--exporter", "torchscript", "--parity-pairs", "2"])
    assert rc == 0 and onnx_path.is_file()
    meta, _, _ = read_onnx_metadata(onnx_path)
    assert meta.task == report["task"] and list(meta.input_size) == [64, 96]
    if "lite" in recipe:  # INT8 keeps each Lite stream's stem and MBConv blocks 0-2 in float (docs/export.md)
        import onnx

        from msmine.export.precision import default_float_depth, leading_convs

        kept = leading_convs(onnx.load(str(onnx_path)), default_float_depth("lite0"))
        for stream in ("visible", "thermal"):
            mine = [n for n in kept if f"/{stream}_backbone/" in n]
            assert any("_conv_stem" in n for n in mine) and any("_blocks.2/_project_conv" in n for n in mine)
            assert not any("_blocks.3/" in n for n in mine), mine
        assert not any("/fusion" in n or "_backbone/" not in n for n in kept), kept

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    det = tmp_path / "det.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "msmine.edge_runtime.cli", "--model", str(onnx_path),
         "--cameras", f"visible={pair_folder / 'visible'},thermal={pair_folder / 'infrared'}",
         "--spool-dir", str(tmp_path / "spool"), "--detections", str(det), "--budget", "2/run",
         "--decision-delay", "inf", "--threads", "1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in det.read_text().splitlines()]
    assert [d["pair"] for d in lines] == [0, 1, 2, 3]
    assert all(math.isfinite(d["score"]) and 0 <= d["score"] <= 1 for d in lines)
    assert all(d["model"] == meta.model_version for d in lines)
