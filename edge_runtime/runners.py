"""The device's model: a runner from :mod:`msmine.inference` whose model passed the device contract.

``load_runner`` opens the model file with the runner for its kind (ONNX via onnxruntime with the
device's ``--backend``/``--threads``; ``.engine``/``.plan`` via TensorRT), activates it, and checks
its inputs, outputs and metadata against the ONNX model contract (:func:`read_model_info`), so a
model the device cannot use is refused with one clear error before it replaces a working one. The
inference itself is the runtime layer's; this module only binds it to the validated
:class:`ModelInfo` the pipeline, packaging and manifests read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from msmine.edge_runtime.model import ModelInfo, file_sha256, read_model_info
from msmine.inference import Runner, open_runner

log = logging.getLogger(__name__)


class ModelRunner:
    """An active inference runner and the model it runs (``info``); ``infer`` as the runner's."""

    def __init__(self, runner: Runner, info: ModelInfo) -> None:
        self.runner = runner
        self.info = info

    @property
    def name(self) -> str:
        return self.runner.name

    @property
    def max_batch(self) -> int | None:
        return self.runner.max_batch

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The runner's outputs; a batch above the model's largest (``--max-batch`` above an engine's
        largest profile) runs in chunks of that size instead of failing in the inference thread."""
        limit = self.runner.max_batch
        batch = len(next(iter(feeds.values()))) if feeds else 0
        if limit is None or batch <= limit:
            return self.runner.infer(feeds)
        parts = [self.runner.infer({name: array[i:i + limit] for name, array in feeds.items()})
                 for i in range(0, batch, limit)]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def deactivate(self) -> None:
        self.runner.deactivate()


def load_runner(path: str | Path, backend: str = "auto", threads: int = 0, sha256: str | None = None,
                spin: bool = False) -> ModelRunner:
    """The activated, contract-checked runner for ``path``; UserError if it cannot run or breaks the contract."""
    runner = open_runner(path, backend=backend, threads=threads, spin=spin)
    runner.activate()
    try:
        info = read_model_info(runner.path, runner.metadata, runner.inputs, runner.outputs,
                               sha256 or file_sha256(runner.path))
    except BaseException:
        runner.deactivate()
        raise
    log.info("model %s (version %s, %s, %s, input %dx%d) runs on %s", runner.path.name, info.version, info.task,
             info.precision, info.input_size[1], info.input_size[0], runner.name)
    return ModelRunner(runner, info)
