"""What the device needs to know about an exported model, checked against the ONNX contract.

docs/architecture.md, "Exported ONNX model": inputs ``visible`` uint8 [N, H, W, 3] and ``thermal``
uint8 [N, H, W, 1]; outputs ``inconsistency`` [N], ``entropy`` [N], ``inconsistency_map_<l>``
[N, h_l, w_l] and, for detection, ``{fused,visible,thermal}_detections`` [N, K, 6]; and the
``msmine.*`` metadata. Anything missing or malformed is a :class:`UserError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from msmine.errors import UserError
from msmine.wire import VERSION_RE

REQUIRED_METADATA = ("msmine.format", "msmine.task", "msmine.class_names", "msmine.input_size", "msmine.levels")
BRANCHES = ("fused", "visible", "thermal")


@dataclass
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "uint8", "float32", "int64"
    shape: list  # ints for fixed dimensions, str/None for dynamic ones


@dataclass
class ModelInfo:
    path: str  # the model file
    sha256: str  # sha256 of the model file (manifest model.hash)
    version: str  # msmine.model_version (manifest model.version)
    task: str  # "detect" or "segment"
    class_names: list[str]  # class id -> name
    input_size: tuple[int, int]  # (height, width) the model takes
    levels: int  # number of inconsistency_map_<l> outputs
    max_candidates: int  # K of the detections outputs (0 for segmentation)
    precision: str  # fp32 / fp16 / int8
    metadata: dict[str, str] = field(default_factory=dict)  # all metadata_props

    @property
    def map_names(self) -> list[str]:
        return [f"inconsistency_map_{i}" for i in range(self.levels)]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json(meta: dict[str, str], key: str, path: str):
    try:
        return json.loads(meta[key])
    except (TypeError, ValueError):
        raise UserError(f"model {path}: metadata {key} is not valid JSON: {meta[key]!r}") from None


def _dim_ok(actual, expected) -> bool:
    return not isinstance(actual, int) or actual == expected


def read_model_info(path: str | Path, metadata: dict[str, str], inputs: list[TensorSpec],
                    outputs: list[TensorSpec], sha256: str | None = None) -> ModelInfo:
    """Validate a model's inputs, outputs and metadata against the contract; return what the device needs."""
    path = str(path)
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise UserError(f"model {path} lacks msmine metadata {', '.join(missing)} (was it made by `msmine export`?)")
    if metadata["msmine.format"] != "1":
        raise UserError(f"model {path}: msmine.format {metadata['msmine.format']!r} is not supported (expected '1')")
    task = metadata["msmine.task"]
    if task not in ("detect", "segment"):
        raise UserError(f"model {path}: msmine.task must be 'detect' or 'segment', got {task!r}")
    names = _json(metadata, "msmine.class_names", path)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise UserError(f"model {path}: msmine.class_names must be a non-empty JSON list of strings")
    size = _json(metadata, "msmine.input_size", path)
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise UserError(f"model {path}: msmine.input_size must be JSON [H, W], got {metadata['msmine.input_size']!r}")
    try:
        levels = int(metadata["msmine.levels"])
    except ValueError:
        raise UserError(f"model {path}: msmine.levels must be an integer, got {metadata['msmine.levels']!r}") from None
    if levels < 1:
        raise UserError(f"model {path}: msmine.levels must be >= 1")
    h, w = size
    by_name = {t.name: t for t in inputs}
    for name, channels in (("visible", 3), ("thermal", 1)):
        spec = by_name.get(name)
        if spec is None:
            raise UserError(f"model {path} has no input {name!r} (inputs: {', '.join(by_name) or 'none'})")
        if spec.dtype != "uint8" or len(spec.shape) != 4 or not all(
            _dim_ok(a, e) for a, e in zip(spec.shape[1:], (h, w, channels))
        ):
            raise UserError(
                f"model {path}: input {name!r} must be uint8 [N, {h}, {w}, {channels}], got {spec.dtype} {spec.shape}"
            )
    out = {t.name: t for t in outputs}
    required = {"inconsistency": 1, "entropy": 1}
    required.update({f"inconsistency_map_{i}": 3 for i in range(levels)})
    if task == "detect":
        required.update({f"{b}_detections": 3 for b in BRANCHES})
    else:
        required.update({f"{b}_segmentation": 3 for b in BRANCHES})
    missing_out = [n for n in required if n not in out]
    if missing_out:
        raise UserError(f"model {path} lacks output(s) {', '.join(missing_out)} of the msmine contract")
    for name, rank in required.items():
        spec = out[name]
        want = "int64" if name.endswith("_segmentation") else "float32"
        if spec.dtype != want or len(spec.shape) != rank:
            raise UserError(f"model {path}: output {name!r} must be {want} of rank {rank}, got {spec.dtype} {spec.shape}")
    k = 0
    if task == "detect":
        shape = out["fused_detections"].shape
        if isinstance(shape[2], int) and shape[2] != 6:
            raise UserError(f"model {path}: fused_detections must be [N, K, 6], got {shape}")
        k = int(metadata.get("msmine.max_candidates") or (shape[1] if isinstance(shape[1], int) else 0))
    version = metadata.get("msmine.model_version") or Path(path).stem
    if not VERSION_RE.match(version):
        version = "unversioned"
    return ModelInfo(
        path=path,
        sha256=sha256 or file_sha256(path),
        version=version,
        task=task,
        class_names=list(names),
        input_size=(int(h), int(w)),
        levels=levels,
        max_candidates=k,
        precision=metadata.get("msmine.precision", "fp32"),
        metadata=dict(metadata),
    )
