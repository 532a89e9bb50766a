"""What the device needs to know about an exported model, checked against the ONNX contract.

The contract (names, metadata, checks) is :mod:`msmine.model_contract`; this module turns a loaded
model's metadata and signature into the :class:`ModelInfo` the device uses. Anything missing or
malformed is a :class:`UserError` naming the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from msmine.model_contract import BRANCHES, ModelMetadata, TensorSpec, check_signature, map_names
from msmine.wire import VERSION_RE

__all__ = ["BRANCHES", "ModelInfo", "TensorSpec", "file_sha256", "read_model_info"]


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
        return map_names(self.levels)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_model_info(path: str | Path, metadata: dict[str, str], inputs: list[TensorSpec],
                    outputs: list[TensorSpec], sha256: str | None = None) -> ModelInfo:
    """Validate a model's inputs, outputs and metadata against the contract; return what the device needs."""
    path = str(path)
    meta = ModelMetadata.from_props(metadata, f"model {path}")
    k = check_signature(meta, inputs, outputs, f"model {path}")
    version = meta.model_version or Path(path).stem
    if not VERSION_RE.match(version):
        version = "unversioned"
    return ModelInfo(
        path=path,
        sha256=sha256 or file_sha256(path),
        version=version,
        task=meta.task,
        class_names=list(meta.class_names),
        input_size=meta.input_size,
        levels=meta.levels,
        max_candidates=k,
        precision=meta.precision,
        metadata=dict(metadata),
    )
