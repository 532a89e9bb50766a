"""The exported graph's score_variant output equals the numpy reference (selector) on the graph's own
maps, under onnxruntime; the metadata names the variant the device checks before reading it.

Tolerance: 1e-5 absolute (float32 in the graph, float64 in selector).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from msmine import selector
from msmine.errors import UserError
from msmine.export.onnx_export import ExportConfig, export_onnx
from msmine.model_contract import VARIANT_KEY, VARIANT_SCORE, Key

os.environ.setdefault("OMP_NUM_THREADS", "1")
TOL = 1e-5


def _model(task):
    from msmine.train.config import ModelConfig
    from msmine.train.models import build_model

    torch.manual_seed(0)
    cfg = ModelConfig(input_size=(64, 80), task=task)
    if task == "segment":
        cfg.class_names = [f"c{i}" for i in range(5)]
        cfg.num_classes = 5
    return build_model(cfg).eval()


def _run(path, batch=3):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    feeds = {"visible": rng.integers(0, 256, (batch, 64, 80, 3), dtype=np.uint8),
             "thermal": rng.integers(0, 256, (batch, 64, 80, 1), dtype=np.uint8)}
    names = [o.name for o in sess.get_outputs()]
    meta = sess.get_modelmeta().custom_metadata_map
    return dict(zip(names, sess.run(None, feeds))), meta


@pytest.mark.parametrize(("task", "variant", "k", "exporter"), [
    ("detect", "topk", 7, "torchscript"),  # the dynamo exporter gives the same (checked once: 318 s on a loaded CPU)
    ("segment", "region_topk", 4, "torchscript"),
    ("segment", "region", 50, "torchscript"),
])  # topk_level shares topk's graph code (tests/train_model/test_train_scoring_variants.py holds it to selector)
def test_graph_variant_equals_selector(tmp_path, task, variant, k, exporter):
    model = _model(task)
    res = export_onnx(model, {}, tmp_path / "m.onnx", ExportConfig(score_variant=variant, variant_k=k,
                                                                   exporter=exporter, max_candidates=20))
    out, meta = _run(res.path)
    assert json.loads(meta[VARIANT_KEY]) == {"name": variant, "k": k}
    levels = int(meta[Key.LEVELS]) if task == "detect" else 1
    params = selector.VariantParams(k=k, num_classes=5 if task == "segment" else None)
    for i in range(out[VARIANT_SCORE].shape[0]):
        maps = [out[f"inconsistency_map_{lv}"][i] for lv in range(levels)]
        predicted = out["fused_segmentation"][i] if task == "segment" else None
        want = selector.frame_score(variant, maps, predicted=predicted, params=params)
        assert out[VARIANT_SCORE][i] == pytest.approx(want, abs=TOL)
        # the paper's score is still there, unchanged
        assert out["inconsistency"][i] == pytest.approx(selector.frame_score("paper", maps), abs=TOL)


def test_paper_adds_nothing_and_graph_less_variants_are_one_line(tmp_path):
    from msmine.export.wrapper import ExportWrapper
    from msmine.model_contract import output_names

    model = _model("detect")
    assert ExportWrapper(model).names == output_names("detect", len(model.level_shapes))  # the contract as before
    assert ExportWrapper(model, score_variant="topk").names[-1] == VARIANT_SCORE
    for bad in ("detection_max", "region", "best"):
        with pytest.raises(UserError, match=r"^--score-variant: expected one of paper, topk, topk_level for a detect"):
            export_onnx(model, {}, tmp_path / "x.onnx", ExportConfig(score_variant=bad))
