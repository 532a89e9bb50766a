"""The exported ONNX model follows the contract in docs/architecture.md and passes parity on real pairs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from msmine.calibration.int8_reader import calibration_batches
from msmine.errors import UserError
from msmine.export.graph import score_subgraph_nodes
from msmine.export.onnx_export import ExportConfig, export_onnx
from msmine.export.parity import check_parity, compare_candidates
from msmine.loop.cli import main

METADATA_KEYS = {
    "msmine.format", "msmine.task", "msmine.class_names", "msmine.input_size", "msmine.normalization",
    "msmine.levels", "msmine.max_candidates", "msmine.score", "msmine.model_version", "msmine.model_hash",
    "msmine.version", "msmine.precision",
}


@pytest.mark.realdata
def test_contract_inputs_outputs_metadata(fp32_export, msrs_root):
    model = onnx.load(str(fp32_export))
    assert {o.version for o in model.opset_import if o.domain == ""} == {17}
    meta = {p.key: p.value for p in model.metadata_props}
    assert METADATA_KEYS <= set(meta)
    assert meta["msmine.format"] == "1" and meta["msmine.task"] == "detect" and meta["msmine.precision"] == "fp32"
    assert json.loads(meta["msmine.class_names"]) == ["person", "bicycle", "car"]
    assert json.loads(meta["msmine.input_size"]) == [128, 160]
    norm = json.loads(meta["msmine.normalization"])
    assert norm["visible"]["mean"] == pytest.approx([0.485, 0.456, 0.406]) and norm["resize"] == "letterbox"
    levels = int(meta["msmine.levels"])
    assert int(meta["msmine.max_candidates"]) == 50 and len(meta["msmine.model_hash"]) == 16

    sess = ort.InferenceSession(str(fp32_export), providers=["CPUExecutionProvider"])
    inputs = {i.name: (i.type, i.shape) for i in sess.get_inputs()}
    assert inputs["visible"][0] == "tensor(uint8)" and inputs["visible"][1][1:] == [128, 160, 3]
    assert inputs["thermal"][0] == "tensor(uint8)" and inputs["thermal"][1][1:] == [128, 160, 1]
    assert isinstance(inputs["visible"][1][0], str)  # dynamic batch
    names = [o.name for o in sess.get_outputs()]
    assert names == (["inconsistency", "entropy"] + [f"inconsistency_map_{i}" for i in range(levels)]
                     + ["fused_detections", "visible_detections", "thermal_detections"])
    for batch in (1, 3):
        feeds = calibration_batches(msrs_root, (128, 160), limit=batch, split="test", batch_size=batch)[0]
        out = dict(zip(names, sess.run(None, feeds)))
        assert out["inconsistency"].shape == (batch,) and out["inconsistency"].dtype == np.float32
        assert np.all((out["inconsistency"] >= 0) & (out["inconsistency"] <= 1))
        assert np.all((out["entropy"] >= 0) & (out["entropy"] <= 1))
        assert out["inconsistency_map_0"].shape == (batch, 16, 20)
        det = out["fused_detections"]
        assert det.shape == (batch, 50, 6)
        assert np.all(det[..., :4] >= 0) and np.all(det[..., :4] <= 1)
        assert np.all(np.diff(det[..., 4], axis=1) <= 0)  # sorted by score
        assert set(np.unique(det[..., 5])) <= {0.0, 1.0, 2.0}
        # the image score is the mean over levels of each level map's mean
        maps = [out[f"inconsistency_map_{i}"] for i in range(levels)]
        np.testing.assert_allclose(out["inconsistency"], np.mean([m.mean(axis=(1, 2)) for m in maps], axis=0),
                                   atol=1e-6)


@pytest.mark.realdata
def test_score_matches_selector_numpy(fp32_export, tiny_checkpoint, msrs_root):
    """The in-graph score equals selector's numpy reference on the branch probabilities."""
    from msmine import selector
    from msmine.train.checkpoint import load_checkpoint

    model, _ = load_checkpoint(tiny_checkpoint)
    feeds = calibration_batches(msrs_root, (128, 160), limit=2, split="test", batch_size=2)[0]
    with torch.no_grad():
        raw = model(torch.from_numpy(feeds["visible"]).permute(0, 3, 1, 2).float() / 255,
                    torch.from_numpy(feeds["thermal"]).permute(0, 3, 1, 2).float() / 255)
    p_v = torch.softmax(raw["visible"]["logits"], -1).numpy().astype(np.float64)
    p_t = torch.softmax(raw["thermal"]["logits"], -1).numpy().astype(np.float64)
    per_anchor = selector.inconsistency(p_v, p_t, kind="categorical")
    levels, start = [], 0
    for h, w, k in model.level_shapes:
        levels.append(per_anchor[:, start:start + h * w * k].reshape(2, h, w, k).mean(-1))
        start += h * w * k
    expected = [selector.scale_balanced_mean([lv[i] for lv in levels]) for i in range(2)]
    sess = ort.InferenceSession(str(fp32_export), providers=["CPUExecutionProvider"])
    (got,) = sess.run(["inconsistency"], feeds)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.realdata
def test_parity_gate_rejects_a_different_model(tiny_checkpoint, msrs_root, tmp_path):
    from msmine.train.checkpoint import load_checkpoint

    model, meta = load_checkpoint(tiny_checkpoint)
    result = export_onnx(model, meta, tmp_path / "m.onnx", ExportConfig(exporter="torchscript", max_candidates=20))
    feeds = calibration_batches(msrs_root, (128, 160), limit=2, split="test", batch_size=2)[0]
    report = check_parity(result.wrapper, result.path, feeds)
    assert report.passed and report.max_abs_error["inconsistency"] <= 1e-4
    with torch.no_grad():  # the PyTorch side changes after export: the gate must catch it
        for p in model.heads["visible"].parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(UserError, match="parity gate failed.*inconsistency"):
        check_parity(result.wrapper, result.path, feeds)


def test_compare_candidates_ignores_swapped_ties():
    ref = np.array([[[0, 0, 1, 1, 0.9, 0], [0.2, 0.2, 0.4, 0.4, 0.5, 1], [0.5, 0.5, 0.6, 0.6, 0.5, 2]]], np.float32)
    swapped = ref[:, [0, 2, 1]]
    assert compare_candidates(ref, swapped, 1e-4) <= 1e-4
    moved = ref.copy()
    moved[0, 0, 0] += 0.01
    assert compare_candidates(ref, moved, 1e-4) == pytest.approx(0.01, rel=1e-3)
    relabelled = ref.copy()
    relabelled[0, 0, 5] = 1
    assert compare_candidates(ref, relabelled, 1e-4) == np.inf


@pytest.mark.realdata
def test_score_subgraph_found(fp32_export):
    model = onnx.load(str(fp32_export))
    keep = set(score_subgraph_nodes(model))
    by_name = {n.name: n.op_type for n in model.graph.node}
    kept_ops = {by_name[k] for k in keep}
    assert {"LogSoftmax", "Log", "TopK", "ReduceMean", "Exp"} <= kept_ops
    convs = [n for n, op in by_name.items() if op == "Conv"]
    head_convs = [c for c in convs if c in keep]
    assert len(head_convs) == 5 * 2 * 3  # 5 levels x (class, box) x 3 branches: the prediction convs
    assert len(convs) > len(head_convs)  # the backbone and fusion stay quantisable


@pytest.mark.realdata
def test_no_score_and_torchscript_exporter(tiny_checkpoint, msrs_root, tmp_path, capsys):
    out = tmp_path / "noscore.onnx"
    assert main(["export", str(tiny_checkpoint), "--out", str(out), "--calib-data", str(msrs_root), "--no-score",
                 "--exporter", "torchscript", "--parity-pairs", "2"]) == 0
    assert "torchscript exporter" in capsys.readouterr().out
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["fused_detections", "visible_detections", "thermal_detections"]
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["msmine.score"].startswith("none")


@pytest.mark.realdata
def test_segmentation_export(msrs_root, tmp_path):
    from msmine.train.checkpoint import load_checkpoint, save_checkpoint
    from msmine.train.config import ModelConfig
    from msmine.train.models import build_model

    names = [f"c{i}" for i in range(9)]
    torch.manual_seed(0)
    seg = build_model(ModelConfig(task="segment", input_size=(96, 128), num_classes=9, class_names=names))
    save_checkpoint(tmp_path / "seg.pt", seg)
    model, meta = load_checkpoint(tmp_path / "seg.pt")
    result = export_onnx(model, meta, tmp_path / "seg.onnx", ExportConfig(exporter="torchscript"))
    feeds = calibration_batches(msrs_root, (96, 128), limit=2, split="test", batch_size=2)[0]
    check_parity(result.wrapper, result.path, feeds)
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    out = {o.name: v for o, v in zip(sess.get_outputs(), sess.run(None, feeds))}
    assert set(out) == {"inconsistency", "entropy", "inconsistency_map_0", "fused_segmentation",
                        "visible_segmentation", "thermal_segmentation"}
    assert out["fused_segmentation"].dtype == np.int64 and out["fused_segmentation"].max() < 9
    assert out["inconsistency_map_0"].shape[1:] == out["fused_segmentation"].shape[1:]
    assert sess.get_modelmeta().custom_metadata_map["msmine.task"] == "segment"


def test_export_user_errors(tiny_checkpoint, tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.pt"), "--out", str(tmp_path / "m.onnx"),
                 "--calib-data", str(tmp_path)]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["export", str(tiny_checkpoint), "--out", str(tmp_path / "m.onnx"),
                 "--calib-data", str(tmp_path / "nowhere")]) == 1
    assert "--calib-data not found" in capsys.readouterr().err
    assert main(["export", str(tiny_checkpoint), "--out", str(tmp_path / "m.txt"), "--calib-data", str(tmp_path)]) == 1
    assert "must end in .onnx" in capsys.readouterr().err
    assert main(["export", str(tiny_checkpoint), "--out", str(tmp_path / "m.onnx"), "--calib-data", str(tmp_path),
                 "--precision", "int8", "--no-score"]) == 1
    assert "--no-score" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["export", str(bad), "--out", str(tmp_path / "m.onnx"), "--calib-data", str(tmp_path)]) == 1
    assert "cannot read checkpoint" in capsys.readouterr().err


@pytest.mark.realdata
def test_binary_score_kind_export(msrs_root, tmp_path):
    """A checkpoint trained with the binary score exports the binary inconsistency (paper's form)."""
    from msmine import selector
    from msmine.train.checkpoint import load_checkpoint, save_checkpoint
    from msmine.train.config import ModelConfig
    from msmine.train.models import build_model

    torch.manual_seed(1)
    save_checkpoint(tmp_path / "bin.pt", build_model(ModelConfig(input_size=(96, 128), score_kind="binary")))
    model, meta = load_checkpoint(tmp_path / "bin.pt")
    result = export_onnx(model, meta, tmp_path / "bin.onnx", ExportConfig(exporter="torchscript"))
    assert result.metadata["msmine.score"].startswith("I = H(")
    feeds = calibration_batches(msrs_root, (96, 128), limit=2, split="test", batch_size=2)[0]
    check_parity(result.wrapper, result.path, feeds)
    with torch.no_grad():
        raw = model(torch.from_numpy(feeds["visible"]).permute(0, 3, 1, 2).float() / 255,
                    torch.from_numpy(feeds["thermal"]).permute(0, 3, 1, 2).float() / 255)
    fg = {b: 1 - torch.softmax(raw[b]["logits"], -1)[..., 0].numpy().astype(np.float64) for b in ("visible", "thermal")}
    per_anchor = selector.inconsistency(fg["visible"], fg["thermal"], kind="binary")
    levels, start = [], 0
    for h, w, k in model.level_shapes:
        levels.append(per_anchor[:, start:start + h * w * k].reshape(2, h, w, k).mean(-1))
        start += h * w * k
    expected = [selector.scale_balanced_mean([lv[i] for lv in levels]) for i in range(2)]
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(["inconsistency"], feeds)[0], expected, atol=1e-5)


@pytest.mark.realdata
def test_model_version_names_the_checkpoint(fp32_export):
    meta = {p.key: p.value for p in onnx.load(str(fp32_export)).metadata_props}
    assert meta["msmine.model_version"] == "tiny-epoch0-step0"
