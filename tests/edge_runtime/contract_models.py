"""Tiny ONNX models that follow the msmine export contract (docs/architecture.md), built with
onnx.helper, no torch. The lead's demo and the benches use them until real exported models exist.

The detection model's outputs are simple, deterministic functions of the inputs, so a test can
compute them exactly offline:

* ``inconsistency`` = |mean(visible) - mean(thermal)| / 255        (per pair, in [0, 1])
* ``entropy``       = mean(thermal) / 255
* ``inconsistency_map_l`` = average-pooled |grey(visible) - thermal| / 255 with stride 8 * 2**l
* ``{fused,visible,thermal}_detections`` = fixed [K, 6] candidates repeated over the batch
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASS_NAMES = ["person", "bicycle", "car"]


def fixed_candidates(k: int) -> np.ndarray:
    """K candidates (x1 y1 x2 y2 score class): two overlapping person boxes, a car, then low scores."""
    cand = np.zeros((k, 6), np.float32)
    base = [[0.10, 0.20, 0.30, 0.60, 0.90, 0], [0.11, 0.21, 0.31, 0.61, 0.80, 0], [0.50, 0.50, 0.90, 0.80, 0.70, 2]]
    for i in range(k):
        cand[i] = base[i] if i < len(base) else [0.0, 0.0, 0.05, 0.05, 0.01, 1]
    return cand


def contract_metadata(height: int, width: int, levels: int, k: int, version: str, task: str = "detect") -> dict:
    return {
        "msmine.format": "1",
        "msmine.task": task,
        "msmine.class_names": json.dumps(CLASS_NAMES),
        "msmine.input_size": json.dumps([height, width]),
        "msmine.normalization": json.dumps({"visible": {"mean": [0.0] * 3, "std": [1.0] * 3}}),
        "msmine.levels": str(levels),
        "msmine.max_candidates": str(k),
        "msmine.score": "test: |mean(visible) - mean(thermal)| / 255",
        "msmine.model_version": version,
        "msmine.model_hash": "0" * 64,
        "msmine.version": "0.1.0",
        "msmine.precision": "fp32",
    }


def build_contract_model(path: str | Path, *, height: int = 480, width: int = 640, levels: int = 3, k: int = 8,
                         version: str = "test-v1", drop_outputs: tuple[str, ...] = (),
                         drop_metadata: tuple[str, ...] = (), scale: float = 1.0, task: str = "detect") -> Path:
    """Write a detection model following the contract; ``drop_*`` make broken ones for error tests.

    ``scale`` multiplies the inconsistency (a different "model version" with different scores).
    ``task="segment"``: one map level and ``{fused,visible,thermal}_segmentation`` (int64 [N, h, w],
    class 1 where the level-0 map exceeds 0.05) instead of the detections.
    """
    if task == "segment":
        levels = 1
    n = "N"
    nodes = [
        helper.make_node("Cast", ["visible"], ["vf"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["thermal"], ["tf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["vf"], ["vm"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("ReduceMean", ["tf"], ["tm"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Sub", ["vm", "tm"], ["d"]),
        helper.make_node("Abs", ["d"], ["ad"]),
        helper.make_node("Mul", ["ad", "inv255s"], ["inconsistency"]),
        helper.make_node("Mul", ["tm", "inv255"], ["entropy"]),
        helper.make_node("ReduceMean", ["vf"], ["vg"], axes=[3], keepdims=1),
        helper.make_node("Sub", ["vg", "tf"], ["gd"]),
        helper.make_node("Abs", ["gd"], ["agd"]),
        helper.make_node("Mul", ["agd", "inv255"], ["agdn"]),
        helper.make_node("Transpose", ["agdn"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Shape", ["vm"], ["nshape"]),
        helper.make_node("Concat", ["nshape", "one", "one"], ["eshape"], axis=0),
    ]
    outputs = [
        helper.make_tensor_value_info("inconsistency", TensorProto.FLOAT, [n]),
        helper.make_tensor_value_info("entropy", TensorProto.FLOAT, [n]),
    ]
    for lvl in range(levels):
        s = 8 * 2**lvl
        nodes.append(helper.make_node("AveragePool", ["nchw"], [f"pool{lvl}"], kernel_shape=[s, s], strides=[s, s]))
        nodes.append(helper.make_node("Squeeze", [f"pool{lvl}", "axis1"], [f"inconsistency_map_{lvl}"]))
        outputs.append(helper.make_tensor_value_info(f"inconsistency_map_{lvl}", TensorProto.FLOAT, [n, height // s, width // s]))
    if task == "segment":
        nodes.append(helper.make_node("Greater", ["inconsistency_map_0", "thr005"], ["segmask"]))
        for branch in ("fused", "visible", "thermal"):
            nodes.append(helper.make_node("Cast", ["segmask"], [f"{branch}_segmentation"], to=TensorProto.INT64))
            outputs.append(helper.make_tensor_value_info(f"{branch}_segmentation", TensorProto.INT64,
                                                         [n, height // 8, width // 8]))
    else:
        for branch in ("fused", "visible", "thermal"):
            nodes.append(helper.make_node("Expand", ["cands", "eshape"], [f"{branch}_detections"]))
            outputs.append(helper.make_tensor_value_info(f"{branch}_detections", TensorProto.FLOAT, [n, k, 6]))
    outputs = [o for o in outputs if o.name not in drop_outputs]
    inits = [
        numpy_helper.from_array(np.array(1 / 255, np.float32), "inv255"),
        numpy_helper.from_array(np.array(scale / 255, np.float32), "inv255s"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(fixed_candidates(k)[None], "cands"),
    ]
    if task == "segment":
        inits.append(numpy_helper.from_array(np.array(0.05, np.float32), "thr005"))
    graph = helper.make_graph(
        nodes, "msmine_contract_test",
        [helper.make_tensor_value_info("visible", TensorProto.UINT8, [n, height, width, 3]),
         helper.make_tensor_value_info("thermal", TensorProto.UINT8, [n, height, width, 1])],
        outputs, inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="msmine-tests")
    model.ir_version = 8
    meta = {k_: v for k_, v in contract_metadata(height, width, levels, k, version, task).items() if k_ not in drop_metadata}
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def expected_inconsistency(visible_rgb: np.ndarray, thermal: np.ndarray, scale: float = 1.0) -> float:
    """What the contract test model computes for one pair (float32 like the model, up to rounding)."""
    vm = np.float32(visible_rgb.astype(np.float32).mean())
    tm = np.float32(thermal.astype(np.float32).mean())
    return float(abs(vm - tm) * np.float32(scale / 255))
