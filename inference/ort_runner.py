"""An ONNX model in an onnxruntime session (CPU, CUDA or TensorRT execution provider).

``backend="auto"`` takes the best provider this onnxruntime build has. onnxruntime silently falls
back to CPU when a CUDA library is missing, so the runner reads the providers that are actually
active (``session.get_providers()``) and refuses an explicit ``cuda``/``tensorrt`` that fell back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from msmine.errors import UserError
from msmine.inference.base import RunnerBase, TensorSpec, check_feeds

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_ORT_TYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32", "tensor(int64)": "int64",
              "tensor(float16)": "float16", "tensor(int32)": "int32"}


def choose_providers(backend: str, available: list[str]) -> list[str]:
    """The provider list for ``backend`` (auto = the best of what this onnxruntime build has)."""
    if backend == "auto":
        wanted = [p for p in PROVIDERS["tensorrt"] if p in available]
        return wanted or ["CPUExecutionProvider"]
    if backend not in PROVIDERS:
        raise UserError(f"bad --backend {backend!r}: expected auto, cpu, cuda or tensorrt")
    first = PROVIDERS[backend][0]
    if first not in available:
        raise UserError(
            f"--backend {backend}: onnxruntime has no {first} here (available: {', '.join(available)}); "
            "install onnxruntime-gpu (msmine[gpu]) or use --backend cpu"
        )
    return [p for p in PROVIDERS[backend] if p in available]


class OnnxRuntimeRunner(RunnerBase):
    """An ONNX model in an onnxruntime session; ``threads`` > 0 pins the intra-op thread count and
    ``spin=False`` lets idle onnxruntime threads sleep (CPU left for capture and decode)."""

    def __init__(self, path: str | Path, backend: str = "auto", threads: int = 0, spin: bool = False) -> None:
        self.path = Path(path)
        self.backend = backend
        self.threads = threads
        self.spin = spin
        self.name = "onnxruntime (inactive)"
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self.metadata: dict[str, str] = {}
        self._session = None

    @property
    def max_batch(self) -> int | None:
        """The fixed batch dimension of the inputs, if the model has one (None: dynamic)."""
        fixed = [t.shape[0] for t in self.inputs if t.shape and isinstance(t.shape[0], int)]
        return min(fixed) if fixed else None

    def activate(self) -> None:
        import onnxruntime as ort

        if not self.path.is_file():
            raise UserError(f"model file not found: {self.path}")
        providers = choose_providers(self.backend, ort.get_available_providers())
        options = ort.SessionOptions()
        options.log_severity_level = 3  # onnxruntime's own warnings bypass logging (and break --log-format json)
        if self.threads > 0:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        if not self.spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt models
            raise UserError(f"cannot load model {self.path}: {str(exc).splitlines()[0]}") from None
        active = session.get_providers()
        if self.backend in ("cuda", "tensorrt") and active[0] != PROVIDERS[self.backend][0]:
            raise UserError(f"--backend {self.backend}: onnxruntime fell back to {active[0]} (missing CUDA/TensorRT libraries?)")
        self.metadata = dict(session.get_modelmeta().custom_metadata_map)
        self.inputs, self.outputs = (
            [TensorSpec(t.name, _ORT_TYPES.get(t.type, t.type), list(t.shape)) for t in tensors]
            for tensors in (session.get_inputs(), session.get_outputs())
        )
        self._session = session
        self.name = f"onnxruntime[{','.join(active)}]"
        log.debug("%s runs on %s", self.path.name, self.name)

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._session is None:
            raise RuntimeError("call activate() before infer()")
        check_feeds(feeds, self.input_names, self.max_batch, self.path)
        names = self.output_names
        return dict(zip(names, self._session.run(names, dict(feeds))))

    def deactivate(self) -> None:
        self._session = None

