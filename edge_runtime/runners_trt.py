"""TensorRT engine runner (thin; imported only for ``.engine``/``.plan`` models).

TensorRT and pycuda come from the device's JetPack or NVIDIA's index, never from this project's
requirements, so both are imported here, lazily. An engine carries no ONNX metadata: the exporter
writes it beside the engine as ``<engine>.json`` (the ONNX model's ``metadata_props``), and the
input/output tensors are checked against the same contract as an ONNX model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from msmine.edge_runtime.model import ModelInfo, TensorSpec, file_sha256, read_model_info
from msmine.errors import UserError

log = logging.getLogger(__name__)


def _import_tensorrt():
    try:
        import pycuda.autoinit  # noqa: F401 - creates the CUDA context
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as exc:
        raise UserError(
            f"TensorRT engines need the tensorrt and pycuda packages ({exc}); install TensorRT from JetPack or "
            "NVIDIA's index, or run the ONNX model with --backend tensorrt/cuda/cpu"
        ) from None
    return trt, cuda


class TensorRTEngineRunner:
    """A serialized TensorRT engine with its sidecar metadata ``<engine>.json``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = "tensorrt (inactive)"
        self.info: ModelInfo | None = None

    def activate(self) -> None:
        trt, cuda = _import_tensorrt()
        sidecar = self.path.with_suffix(self.path.suffix + ".json")
        if not sidecar.is_file():
            raise UserError(f"engine {self.path}: metadata file {sidecar} not found (written by `msmine export`)")
        try:
            meta = {str(k): str(v) for k, v in json.loads(sidecar.read_text()).items()}
        except (ValueError, AttributeError):
            raise UserError(f"engine {self.path}: {sidecar} is not a JSON object") from None
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise UserError(f"cannot deserialize TensorRT engine {self.path} (built for another TensorRT or GPU?)")
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            spec = TensorSpec(name, np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name, list(engine.get_tensor_shape(name)))
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        self.info = read_model_info(self.path, meta, inputs, outputs, file_sha256(self.path))
        self._trt, self._cuda = trt, cuda
        self._engine = engine
        self._context = engine.create_execution_context()
        self._stream = cuda.Stream()
        self._outputs = [t.name for t in outputs]
        self.name = "tensorrt-engine"
        log.info("TensorRT engine %s (version %s) active", self.path.name, self.info.version)

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda, ctx = self._cuda, self._context
        keep = []
        for name, array in feeds.items():
            array = np.ascontiguousarray(array)
            ctx.set_input_shape(name, array.shape)
            mem = cuda.mem_alloc(array.nbytes)
            cuda.memcpy_htod_async(mem, array, self._stream)
            ctx.set_tensor_address(name, int(mem))
            keep.append(mem)
        results = {}
        for name in self._outputs:
            shape = tuple(ctx.get_tensor_shape(name))
            dtype = self._trt.nptype(self._engine.get_tensor_dtype(name))
            host = cuda.pagelocked_empty(shape, dtype)
            mem = cuda.mem_alloc(host.nbytes)
            ctx.set_tensor_address(name, int(mem))
            results[name] = (host, mem)
            keep.append(mem)
        ctx.execute_async_v3(self._stream.handle)
        for host, mem in results.values():
            cuda.memcpy_dtoh_async(host, mem, self._stream)
        self._stream.synchronize()
        return {name: np.array(host) for name, (host, _) in results.items()}

    def deactivate(self) -> None:
        self._context = None
        self._engine = None
