"""The export <-> device model contract: ONNX names, metadata, parsing, and a builder for tests.

One owner for what ``msmine export`` writes and what ``edge-runtime``, calibration and the export
gates read (docs/architecture.md, "Exported ONNX model"):

* inputs ``visible`` uint8 [N, H, W, 3] (RGB) and ``thermal`` uint8 [N, H, W, 1];
* outputs ``inconsistency`` [N], ``entropy`` [N], ``inconsistency_map_<l>`` [N, h_l, w_l]
  (l = 0..L-1) and ``{fused,visible,thermal}_detections`` float32 [N, K, 6] (detection) or
  ``{fused,visible,thermal}_segmentation`` int64 [N, h, w] (segmentation);
* ``metadata_props`` (strings, JSON where structured): :class:`ModelMetadata`.

Ground floor: stdlib + numpy (+ onnx for :func:`read_onnx_metadata` and :func:`build_contract_model`,
imported where used). No torch, no onnxruntime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from msmine.errors import UserError

FORMAT = "1"  # msmine.format this code reads and writes
TASKS = ("detect", "segment")
PRECISIONS = ("fp32", "fp16", "int8")
BRANCHES = ("fused", "visible", "thermal")

# inputs
VISIBLE = "visible"
THERMAL = "thermal"
INPUT_NAMES = (VISIBLE, THERMAL)
INPUT_CHANNELS = {VISIBLE: 3, THERMAL: 1}
INPUT_DTYPE = "uint8"

# outputs
INCONSISTENCY = "inconsistency"
ENTROPY = "entropy"
SCORE_OUTPUTS = (INCONSISTENCY, ENTROPY)
MAP_PREFIX = "inconsistency_map_"
VARIANT_SCORE = "score_variant"  # optional [N]: the image score under the variant named by VARIANT_KEY
VARIANT_KEY = "msmine.score_variant"  # optional metadata: JSON {"name", "k"} of the score_variant output
DETECTION_FIELDS = 6  # x1 y1 x2 y2 (normalised to the model input) score class


class Key:
    """The ``metadata_props`` keys."""

    FORMAT = "msmine.format"
    TASK = "msmine.task"
    CLASS_NAMES = "msmine.class_names"
    INPUT_SIZE = "msmine.input_size"
    NORMALIZATION = "msmine.normalization"
    LEVELS = "msmine.levels"
    MAX_CANDIDATES = "msmine.max_candidates"
    SCORE = "msmine.score"
    MODEL_VERSION = "msmine.model_version"
    MODEL_HASH = "msmine.model_hash"
    VERSION = "msmine.version"
    PRECISION = "msmine.precision"


REQUIRED_KEYS = (Key.FORMAT, Key.TASK, Key.CLASS_NAMES, Key.INPUT_SIZE, Key.LEVELS)


def map_name(level: int) -> str:
    return f"{MAP_PREFIX}{int(level)}"


def map_names(levels: int) -> list[str]:
    return [map_name(i) for i in range(levels)]


def branch_output(branch: str, task: str) -> str:
    """``fused_detections`` / ``thermal_segmentation`` ...: one branch's prediction output."""
    return f"{branch}_{'detections' if task == 'detect' else 'segmentation'}"


def output_names(task: str, levels: int, with_score: bool = True) -> list[str]:
    """The contract's output names in the order the export wrapper returns them.

    Segmentation models have one map level whatever ``levels`` says."""
    names: list[str] = []
    if with_score:
        names += [*SCORE_OUTPUTS, *map_names(levels if task == "detect" else 1)]
    names += [branch_output(b, task) for b in BRANCHES]
    return names


def output_specs(task: str, levels: int, with_score: bool = True) -> dict[str, tuple[str, int]]:
    """Output name -> (numpy dtype name, rank)."""
    specs = {}
    for name in output_names(task, levels, with_score):
        if name in SCORE_OUTPUTS:
            specs[name] = ("float32", 1)
        elif name.endswith("_segmentation"):
            specs[name] = ("int64", 3)
        else:
            specs[name] = ("float32", 3)
    return specs


@dataclass
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "uint8", "float32", "int64"
    shape: list  # ints for fixed dimensions, str/None for dynamic ones


@dataclass
class ModelMetadata:
    """The parsed ``metadata_props`` of an exported model."""

    task: str  # "detect" or "segment"
    class_names: list[str]  # class id -> name
    input_size: tuple[int, int]  # (height, width) the model takes
    levels: int  # number of inconsistency_map_<l> outputs
    max_candidates: int = 0  # K of the detections outputs (0: unknown / segmentation)
    normalization: dict = field(default_factory=dict)  # how the graph normalises its uint8 inputs
    score: str = ""  # definition of the score outputs
    model_version: str = ""  # e.g. "effnet-epoch3-step900" ("" if not recorded)
    model_hash: str = ""  # hash of the weights
    version: str = ""  # msmine version that exported it
    precision: str = "fp32"  # fp32 / fp16 / int8
    format: str = FORMAT

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` dict (every value a string)."""
        return {
            Key.FORMAT: str(self.format),
            Key.TASK: self.task,
            Key.CLASS_NAMES: json.dumps(list(self.class_names)),
            Key.INPUT_SIZE: json.dumps([int(v) for v in self.input_size]),
            Key.NORMALIZATION: json.dumps(self.normalization),
            Key.LEVELS: str(int(self.levels)),
            Key.MAX_CANDIDATES: str(int(self.max_candidates)),
            Key.SCORE: self.score,
            Key.MODEL_VERSION: self.model_version,
            Key.MODEL_HASH: self.model_hash,
            Key.VERSION: self.version,
            Key.PRECISION: self.precision,
        }

    @classmethod
    def from_props(cls, props: dict[str, str], where: str = "model") -> ModelMetadata:
        """Parse and check ``metadata_props``; a missing or malformed key is a UserError naming ``where``."""
        missing = [k for k in REQUIRED_KEYS if k not in props]
        if missing:
            raise UserError(f"{where} lacks msmine metadata {', '.join(missing)} (was it made by `msmine export`?)")
        if props[Key.FORMAT] != FORMAT:
            raise UserError(f"{where}: {Key.FORMAT} {props[Key.FORMAT]!r} is not supported (expected {FORMAT!r})")
        task = props[Key.TASK]
        if task not in TASKS:
            raise UserError(f"{where}: {Key.TASK} must be 'detect' or 'segment', got {task!r}")
        names = _json(props, Key.CLASS_NAMES, where)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise UserError(f"{where}: {Key.CLASS_NAMES} must be a non-empty JSON list of strings")
        size = _json(props, Key.INPUT_SIZE, where)
        if not (isinstance(size, list) and len(size) == 2
                and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
            raise UserError(f"{where}: {Key.INPUT_SIZE} must be JSON [H, W], got {props[Key.INPUT_SIZE]!r}")
        levels = _int(props, Key.LEVELS, where)
        if levels < 1:
            raise UserError(f"{where}: {Key.LEVELS} must be >= 1, got {levels}")
        k = _int(props, Key.MAX_CANDIDATES, where) if props.get(Key.MAX_CANDIDATES) else 0
        if k < 0:
            raise UserError(f"{where}: {Key.MAX_CANDIDATES} must be >= 0, got {k}")
        norm = _json(props, Key.NORMALIZATION, where) if props.get(Key.NORMALIZATION) else {}
        if not isinstance(norm, dict):
            raise UserError(f"{where}: {Key.NORMALIZATION} must be a JSON object")
        precision = props.get(Key.PRECISION) or "fp32"
        if precision not in PRECISIONS:
            raise UserError(f"{where}: {Key.PRECISION} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        return cls(
            task=task, class_names=list(names), input_size=(int(size[0]), int(size[1])), levels=levels,
            max_candidates=k, normalization=norm, score=props.get(Key.SCORE, ""),
            model_version=props.get(Key.MODEL_VERSION, ""), model_hash=props.get(Key.MODEL_HASH, ""),
            version=props.get(Key.VERSION, ""), precision=precision, format=props[Key.FORMAT],
        )

    @property
    def map_names(self) -> list[str]:
        return map_names(self.levels)

    def output_specs(self, with_score: bool = True) -> dict[str, tuple[str, int]]:
        return output_specs(self.task, self.levels, with_score)


def _json(props: dict[str, str], key: str, where: str):
    try:
        return json.loads(props[key])
    except (TypeError, ValueError):
        raise UserError(f"{where}: metadata {key} is not valid JSON: {props[key]!r}") from None


def _int(props: dict[str, str], key: str, where: str) -> int:
    try:
        return int(props[key])
    except (TypeError, ValueError):
        raise UserError(f"{where}: {key} must be an integer, got {props[key]!r}") from None


def _dim_ok(actual, expected) -> bool:
    return not isinstance(actual, int) or actual == expected


def check_signature(meta: ModelMetadata, inputs: list[TensorSpec], outputs: list[TensorSpec], where: str = "model",
                    with_score: bool = True) -> int:
    """Check a model's inputs and outputs against the contract; -> K of the detections (0 if unknown)."""
    h, w = meta.input_size
    by_name = {t.name: t for t in inputs}
    for name in INPUT_NAMES:
        channels = INPUT_CHANNELS[name]
        spec = by_name.get(name)
        if spec is None:
            raise UserError(f"{where} has no input {name!r} (inputs: {', '.join(by_name) or 'none'})")
        if spec.dtype != INPUT_DTYPE or len(spec.shape) != 4 or not all(
            _dim_ok(a, e) for a, e in zip(spec.shape[1:], (h, w, channels))
        ):
            raise UserError(f"{where}: input {name!r} must be {INPUT_DTYPE} [N, {h}, {w}, {channels}], "
                            f"got {spec.dtype} {spec.shape}")
    out = {t.name: t for t in outputs}
    required = meta.output_specs(with_score)
    missing = [n for n in required if n not in out]
    if missing:
        raise UserError(f"{where} lacks output(s) {', '.join(missing)} of the msmine contract")
    for name, (dtype, rank) in required.items():
        spec = out[name]
        if spec.dtype != dtype or len(spec.shape) != rank:
            raise UserError(f"{where}: output {name!r} must be {dtype} of rank {rank}, got {spec.dtype} {spec.shape}")
    if meta.task != "detect":
        return 0
    fused = branch_output("fused", "detect")
    shape = out[fused].shape
    if isinstance(shape[2], int) and shape[2] != DETECTION_FIELDS:
        raise UserError(f"{where}: {fused} must be [N, K, {DETECTION_FIELDS}], got {shape}")
    return meta.max_candidates or (shape[1] if isinstance(shape[1], int) else 0)


def non_finite(outputs: dict[str, np.ndarray]) -> dict[str, int]:
    """Output name -> how many non-finite values it holds (float outputs only; zero counts left out)."""
    bad = {}
    for name, value in outputs.items():
        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            count = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            if count:
                bad[name] = count
    return bad


# ---- ONNX files ---------------------------------------------------------------------------------

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


def _specs(values) -> list[TensorSpec]:
    specs = []
    for v in values:
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        specs.append(TensorSpec(v.name, _ONNX_DTYPES.get(t.elem_type, str(t.elem_type)), dims))
    return specs


def read_onnx_metadata(path: str | Path) -> tuple[ModelMetadata, list[TensorSpec], list[TensorSpec]]:
    """(metadata, inputs, outputs) of an ONNX file, checked against the contract (onnx, no runtime)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UserError(f"model not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others on a bad file
        raise UserError(f"cannot read ONNX model {path}: {exc}") from None
    meta = ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props}, f"model {path}")
    return meta, _specs(proto.graph.input), _specs(proto.graph.output)


# ---- contract test models -----------------------------------------------------------------------

TEST_CLASS_NAMES = ["person", "bicycle", "car"]


def fixed_candidates(k: int) -> np.ndarray:
    """K candidates (x1 y1 x2 y2 score class): two overlapping person boxes, a car, then low scores."""
    cand = np.zeros((k, DETECTION_FIELDS), np.float32)
    base = [[0.10, 0.20, 0.30, 0.60, 0.90, 0], [0.11, 0.21, 0.31, 0.61, 0.80, 0], [0.50, 0.50, 0.90, 0.80, 0.70, 2]]
    for i in range(k):
        cand[i] = base[i] if i < len(base) else [0.0, 0.0, 0.05, 0.05, 0.01, 1]
    return cand


def sample_metadata(height: int, width: int, levels: int, k: int, version: str, task: str = "detect",
                  class_names: list[str] | None = None, precision: str = "fp32") -> ModelMetadata:
    """The metadata of a contract test model."""
    return ModelMetadata(
        task=task, class_names=list(class_names or TEST_CLASS_NAMES), input_size=(height, width),
        levels=1 if task == "segment" else levels, max_candidates=k if task == "detect" else 0,
        normalization={"visible": {"mean": [0.0] * 3, "std": [1.0] * 3}},
        score="test: |mean(visible) - mean(thermal)| / 255", model_version=version, model_hash="0" * 64,
        version="0.1.0", precision=precision,
    )


def build_contract_model(path: str | Path, *, height: int = 480, width: int = 640, levels: int = 3, k: int = 8,
                         version: str = "test-v1", task: str = "detect", scale: float = 1.0,
                         drop_outputs: tuple[str, ...] = (), drop_metadata: tuple[str, ...] = (),
                         non_finite_score: float | None = None, class_names: list[str] | None = None,
                         precision: str = "fp32") -> Path:
    """Write a tiny ONNX model that follows the contract (onnx.helper; no torch).

    Its outputs are simple deterministic functions of the inputs (:func:`expected_inconsistency`):

    * ``inconsistency`` = scale * |mean(visible) - mean(thermal)| / 255
    * ``entropy`` = mean(thermal) / 255
    * ``inconsistency_map_l`` = average-pooled |grey(visible) - thermal| / 255, stride 8 * 2**l
    * detection: ``{branch}_detections`` = :func:`fixed_candidates` repeated over the batch;
      segmentation (one map level): ``{branch}_segmentation`` = int64 (level-0 map > 0.05).

    ``non_finite_score`` (e.g. ``float("nan")``, ``float("inf")``): the model's ``inconsistency``
    and ``entropy`` are that value for every pair (the fault of an FP16 overflow).
    ``drop_outputs`` / ``drop_metadata`` make broken models for error tests.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    meta = sample_metadata(height, width, levels, k, version, task, class_names, precision)
    levels = meta.levels
    n = "N"
    inc, ent = (INCONSISTENCY, ENTROPY) if non_finite_score is None else ("inc_finite", "ent_finite")
    nodes = [
        helper.make_node("Cast", [VISIBLE], ["vf"], to=TensorProto.FLOAT),
        helper.make_node("Cast", [THERMAL], ["tf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["vf"], ["vm"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("ReduceMean", ["tf"], ["tm"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Sub", ["vm", "tm"], ["d"]),
        helper.make_node("Abs", ["d"], ["ad"]),
        helper.make_node("Mul", ["ad", "inv255s"], [inc]),
        helper.make_node("Mul", ["tm", "inv255"], [ent]),
        helper.make_node("ReduceMean", ["vf"], ["vg"], axes=[3], keepdims=1),
        helper.make_node("Sub", ["vg", "tf"], ["gd"]),
        helper.make_node("Abs", ["gd"], ["agd"]),
        helper.make_node("Mul", ["agd", "inv255"], ["agdn"]),
        helper.make_node("Transpose", ["agdn"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Shape", ["vm"], ["nshape"]),
        helper.make_node("Concat", ["nshape", "one", "one"], ["eshape"], axis=0),
    ]
    inits = [
        numpy_helper.from_array(np.array(1 / 255, np.float32), "inv255"),
        numpy_helper.from_array(np.array(scale / 255, np.float32), "inv255s"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(fixed_candidates(k)[None], "cands"),
    ]
    if non_finite_score is not None:
        # x * 0 + value: the same shape as the finite score, every element the non-finite value
        inits += [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                  numpy_helper.from_array(np.array(non_finite_score, np.float32), "bad")]
        for finite, name in ((inc, INCONSISTENCY), (ent, ENTROPY)):
            nodes += [helper.make_node("Mul", [finite, "zero"], [f"{name}_zero"]),
                      helper.make_node("Add", [f"{name}_zero", "bad"], [name])]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n]) for name in SCORE_OUTPUTS]
    for lvl in range(levels):
        s = 8 * 2**lvl
        nodes.append(helper.make_node("AveragePool", ["nchw"], [f"pool{lvl}"], kernel_shape=[s, s], strides=[s, s]))
        nodes.append(helper.make_node("Squeeze", [f"pool{lvl}", "axis1"], [map_name(lvl)]))
        outputs.append(helper.make_tensor_value_info(map_name(lvl), TensorProto.FLOAT, [n, height // s, width // s]))
    if task == "segment":
        inits.append(numpy_helper.from_array(np.array(0.05, np.float32), "thr005"))
        nodes.append(helper.make_node("Greater", [map_name(0), "thr005"], ["segmask"]))
        for branch in BRANCHES:
            name = branch_output(branch, task)
            nodes.append(helper.make_node("Cast", ["segmask"], [name], to=TensorProto.INT64))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.INT64, [n, height // 8, width // 8]))
    else:
        for branch in BRANCHES:
            name = branch_output(branch, task)
            nodes.append(helper.make_node("Expand", ["cands", "eshape"], [name]))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, k, DETECTION_FIELDS]))
    outputs = [o for o in outputs if o.name not in drop_outputs]
    graph = helper.make_graph(
        nodes, "msmine_contract_test",
        [helper.make_tensor_value_info(VISIBLE, TensorProto.UINT8, [n, height, width, INPUT_CHANNELS[VISIBLE]]),
         helper.make_tensor_value_info(THERMAL, TensorProto.UINT8, [n, height, width, INPUT_CHANNELS[THERMAL]])],
        outputs, inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="msmine-tests")
    model.ir_version = 8
    helper.set_model_props(model, {k_: v for k_, v in meta.to_props().items() if k_ not in drop_metadata})
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def expected_inconsistency(visible_rgb: np.ndarray, thermal: np.ndarray, scale: float = 1.0) -> float:
    """What :func:`build_contract_model`'s model computes for one pair of feeds (float32, up to rounding)."""
    vm = np.float32(visible_rgb.astype(np.float32).mean())
    tm = np.float32(thermal.astype(np.float32).mean())
    return float(abs(vm - tm) * np.float32(scale / 255))
