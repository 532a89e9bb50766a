"""Inference runners and the engine file format: the one runtime layer that the device and export's
GPU check both import.

* :mod:`.base` - the runner protocol (``activate`` / ``infer({name: array}) -> {name: array}`` /
  ``deactivate``; input/output specs, metadata, batch limits) and :class:`TensorSpec`;
* :mod:`.ort_runner` - :class:`OnnxRuntimeRunner` (onnxruntime's CPU, CUDA or TensorRT provider);
* :mod:`.trt_runner` - :class:`TensorRTRunner` (a framed TensorRT engine through pycuda);
* :mod:`.engine_format` - the framed engine file (magic, JSON header, plan) and its profiles;
* :func:`open_runner` - the runner for a model file (``.engine``/``.plan`` -> TensorRT, else ONNX).

No torch. onnxruntime, tensorrt and pycuda are imported lazily, only when a runner is activated or a
TensorRT runner is created, so ``import msmine.inference`` costs numpy and nothing else.
"""

from msmine.inference.base import Runner, TensorSpec, check_feeds
from msmine.inference.engine_format import (
    MAGIC,
    Profile,
    frame_engine,
    profiles_from_header,
    read_engine,
    select_profile,
    unframe_engine,
    write_engine,
)
from msmine.inference.loader import ENGINE_SUFFIXES, open_runner
from msmine.inference.ort_runner import PROVIDERS, OnnxRuntimeRunner, choose_providers
from msmine.inference.trt_runner import TensorRTRunner

__all__ = [
    "ENGINE_SUFFIXES", "MAGIC", "PROVIDERS", "OnnxRuntimeRunner", "Profile", "Runner", "TensorRTRunner",
    "TensorSpec", "check_feeds", "choose_providers", "frame_engine", "open_runner", "profiles_from_header",
    "read_engine", "select_profile", "unframe_engine", "write_engine",
]
