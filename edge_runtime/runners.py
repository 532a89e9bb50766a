"""Inference backends behind one runner interface (activate / infer / deactivate).

``OnnxRuntimeRunner`` runs an exported ONNX model with onnxruntime's CPU, CUDA or TensorRT
execution provider; ``.engine``/``.plan`` files go to the TensorRT engine runner in
:mod:`edge_runtime.runners_trt` (imported only then). ``--backend auto`` takes the best provider
available, and the runner logs the providers that are actually active: onnxruntime silently falls
back to CPU when a CUDA library is missing, so ``session.get_providers()`` is the truth.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from msmine.edge_runtime.model import ModelInfo, TensorSpec, file_sha256, read_model_info
from msmine.errors import UserError

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_ORT_TYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32", "tensor(int64)": "int64",
              "tensor(float16)": "float16", "tensor(int32)": "int32"}


class Runner(Protocol):
    info: ModelInfo  # the validated model (after activate)
    name: str  # what actually runs, e.g. "onnxruntime[CPUExecutionProvider]"

    def activate(self) -> None: ...

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def deactivate(self) -> None: ...


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


class OnnxRuntimeRunner:
    """An exported msmine ONNX model in an onnxruntime session."""

    def __init__(self, path: str | Path, backend: str = "auto", threads: int = 0, sha256: str | None = None,
                 spin: bool = False) -> None:
        self.path = Path(path)
        self.spin = spin
        self.backend = backend
        self.threads = threads
        self._sha256 = sha256
        self._session = None
        self.name = "onnxruntime (inactive)"
        self.info: ModelInfo | None = None
        self._output_names: list[str] = []

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
        if not self.spin:  # idle onnxruntime threads sleep instead of spinning: CPU left for capture and decode
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt models
            raise UserError(f"cannot load model {self.path}: {str(exc).splitlines()[0]}") from None
        meta = dict(session.get_modelmeta().custom_metadata_map)
        specs = [
            [TensorSpec(t.name, _ORT_TYPES.get(t.type, t.type), list(t.shape)) for t in tensors]
            for tensors in (session.get_inputs(), session.get_outputs())
        ]
        self.info = read_model_info(self.path, meta, specs[0], specs[1], self._sha256 or file_sha256(self.path))
        active = session.get_providers()
        if self.backend in ("cuda", "tensorrt") and active[0] != PROVIDERS[self.backend][0]:
            raise UserError(f"--backend {self.backend}: onnxruntime fell back to {active[0]} (missing CUDA/TensorRT libraries?)")
        self._session = session
        self._output_names = [t.name for t in session.get_outputs()]
        self.name = f"onnxruntime[{','.join(active)}]"
        log.info("model %s (version %s, %s, %s, input %dx%d) runs on %s", self.path.name, self.info.version,
                 self.info.task, self.info.precision, self.info.input_size[1], self.info.input_size[0], self.name)

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._session.run(self._output_names, feeds)
        return dict(zip(self._output_names, outputs))

    def deactivate(self) -> None:
        self._session = None


def load_runner(path: str | Path, backend: str = "auto", threads: int = 0, sha256: str | None = None,
                spin: bool = False) -> Runner:
    """An activated runner for ``path``: ONNX via onnxruntime, ``.engine``/``.plan`` via TensorRT."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    if path.suffix in (".engine", ".plan"):
        from msmine.edge_runtime.runners_trt import TensorRTEngineRunner

        runner: Runner = TensorRTEngineRunner(path)
    else:
        runner = OnnxRuntimeRunner(path, backend=backend, threads=threads, sha256=sha256, spin=spin)
    runner.activate()
    return runner
