"""msmine.model_contract: the one owner of the export <-> device model contract."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from msmine.errors import UserError
from msmine.model_contract import (
    Key,
    ModelMetadata,
    build_contract_model,
    check_signature,
    expected_inconsistency,
    output_names,
    read_onnx_metadata,
    sample_metadata,
)

REPO = Path(__file__).resolve().parents[2]


def test_metadata_round_trip_and_keys():
    meta = sample_metadata(240, 320, 3, 8, "v-1")
    props = meta.to_props()
    assert all(isinstance(v, str) for v in props.values())
    assert set(props) == {v for k, v in vars(Key).items() if not k.startswith("_")}
    assert ModelMetadata.from_props(props) == meta
    assert meta.input_size == (240, 320) and meta.map_names == ["inconsistency_map_0", "inconsistency_map_1",
                                                                 "inconsistency_map_2"]


@pytest.mark.parametrize("change, message", [
    ({Key.TASK: None}, "lacks msmine metadata msmine.task"),
    ({Key.FORMAT: "2"}, "msmine.format '2' is not supported"),
    ({Key.TASK: "classify"}, "msmine.task must be"),
    ({Key.CLASS_NAMES: "[1, 2]"}, "class_names must be a non-empty JSON list of strings"),
    ({Key.CLASS_NAMES: "not json"}, "is not valid JSON"),
    ({Key.INPUT_SIZE: "[240]"}, "input_size must be JSON"),
    ({Key.LEVELS: "three"}, "levels must be an integer"),
    ({Key.LEVELS: "0"}, "levels must be >= 1"),
    ({Key.PRECISION: "fp8"}, "precision must be one of"),
])
def test_from_props_errors_name_the_model_and_key(change, message):
    props = sample_metadata(240, 320, 3, 8, "v").to_props()
    for key, value in change.items():
        if value is None:
            del props[key]
        else:
            props[key] = value
    with pytest.raises(UserError, match=re.escape(message)) as err:
        ModelMetadata.from_props(props, "model m.onnx")
    assert str(err.value).startswith("model m.onnx")


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_builder_models_follow_the_contract(tmp_path, task):
    path = build_contract_model(tmp_path / "m.onnx", height=64, width=96, levels=2, k=5, task=task)
    meta, inputs, outputs = read_onnx_metadata(path)
    assert [o.name for o in outputs] == output_names(task, meta.levels)
    assert check_signature(meta, inputs, outputs) == (5 if task == "detect" else 0)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"visible": rng.integers(0, 255, (2, 64, 96, 3), dtype=np.uint8),
             "thermal": rng.integers(0, 255, (2, 64, 96, 1), dtype=np.uint8)}
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    assert got["inconsistency"][1] == pytest.approx(expected_inconsistency(feeds["visible"][1], feeds["thermal"][1]))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_builder_emits_non_finite_scores_on_demand(tmp_path, value):
    path = build_contract_model(tmp_path / "bad.onnx", height=32, width=32, levels=1, k=3, non_finite_score=value)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inc, ent = sess.run(["inconsistency", "entropy"], {"visible": np.zeros((3, 32, 32, 3), np.uint8),
                                                       "thermal": np.zeros((3, 32, 32, 1), np.uint8)})
    assert inc.shape == (3,) and ent.shape == (3,)
    np.testing.assert_array_equal(inc, np.full(3, value, np.float32))
    np.testing.assert_array_equal(ent, np.full(3, value, np.float32))


def test_signature_errors(tmp_path):
    broken = build_contract_model(tmp_path / "b.onnx", height=32, width=32, levels=2, k=3,
                                  drop_outputs=("inconsistency_map_1",))
    meta, inputs, outputs = read_onnx_metadata(broken)
    with pytest.raises(UserError, match="lacks output.*inconsistency_map_1"):
        check_signature(meta, inputs, outputs)
    with pytest.raises(UserError, match="lacks msmine metadata msmine.levels"):
        read_onnx_metadata(build_contract_model(tmp_path / "c.onnx", drop_metadata=(Key.LEVELS,)))


# The contract's strings may be spelled only in msmine/model_contract.py (issue 10 item 1): the
# modules that write or read models use its names.
CONTRACT_USERS = ["export/onnx_export.py", "export/wrapper.py", "export/fidelity.py", "export/parity.py",
                  "export/precision.py", "edge_runtime/packaging.py",
                  "edge_runtime/model.py", "calibration/onnx_scoring.py", "calibration/pairs.py",
                  "tests/edge_runtime/contract_models.py"]
CONTRACT_LITERAL = re.compile(r"""["'](msmine\.(format|task|class_names|input_size|normalization|levels|"""
                              r"""max_candidates|score|model_version|model_hash|version|precision)|"""
                              r"""inconsistency_map_|(fused|visible|thermal)_(detections|segmentation))""")


@pytest.mark.parametrize("rel", CONTRACT_USERS)
def test_no_contract_string_is_written_twice(rel):
    text = (REPO / rel).read_text()
    hits = [m.group(0) for m in CONTRACT_LITERAL.finditer(text)]
    assert not hits, f"{rel} spells contract strings itself: {hits} (use msmine.model_contract)"
