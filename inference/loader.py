"""The runner for a model file: ``.engine``/``.plan`` -> TensorRT, anything else -> onnxruntime."""

from __future__ import annotations

from pathlib import Path

from msmine.errors import UserError
from msmine.inference.base import Runner

ENGINE_SUFFIXES = (".engine", ".plan")


def open_runner(path: str | Path, backend: str = "auto", threads: int = 0, spin: bool = False,
                device_index: int = 0) -> Runner:
    """An inactive runner for ``path`` (call ``activate()``); UserError if the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    if path.suffix in ENGINE_SUFFIXES:
        from msmine.inference.trt_runner import TensorRTRunner

        return TensorRTRunner(path, device_index=device_index)
    from msmine.inference.ort_runner import OnnxRuntimeRunner

    return OnnxRuntimeRunner(path, backend=backend, threads=threads, spin=spin)
