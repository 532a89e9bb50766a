"""The runner protocol: what the device and export's GPU check call, whatever runs the model."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from msmine.errors import UserError
from msmine.model_contract import TensorSpec  # one input/output: name, numpy dtype name, shape

__all__ = ["Runner", "RunnerBase", "TensorSpec", "check_feeds"]


class Runner(Protocol):
    """``activate()`` once, ``infer()`` from any one thread at a time, ``deactivate()`` once.

    ``inputs``/``outputs``/``metadata`` are known after ``activate()``; ``max_batch`` is the largest
    batch the model accepts (None: no limit the runtime knows of).
    """

    path: Path
    name: str  # what actually runs, e.g. "onnxruntime[CPUExecutionProvider]", "tensorrt[Orin]"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    metadata: dict[str, str]  # the model's msmine.* metadata (ONNX metadata_props / engine header)

    @property
    def input_names(self) -> list[str]: ...

    @property
    def output_names(self) -> list[str]: ...

    @property
    def max_batch(self) -> int | None: ...

    def activate(self) -> None: ...

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def deactivate(self) -> None: ...


class RunnerBase:
    """What every runner derives from its specs (the names) and the ``with runner:`` form."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def __enter__(self):
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()


def check_feeds(feeds: Mapping[str, np.ndarray], input_names: list[str], max_batch: int | None,
                source: str | Path) -> int:
    """The batch size of ``feeds``; UserError if an input is missing, the inputs disagree on the batch
    or it exceeds ``max_batch``. Checked before any runtime call, so the error names the cause."""
    missing = [name for name in input_names if name not in feeds]
    if missing:
        raise UserError(f"model {source}: feeds lack input(s) {', '.join(missing)} (given: {', '.join(feeds) or 'none'})")
    batches = {name: int(np.shape(feeds[name])[0]) if np.ndim(feeds[name]) else -1 for name in input_names}
    sizes = set(batches.values())
    if len(sizes) != 1 or min(sizes) < 1:
        raise UserError(f"model {source}: inputs must share one batch size >= 1, got {batches}")
    batch = sizes.pop()
    if max_batch is not None and batch > max_batch:
        raise UserError(f"model {source}: batch {batch} exceeds the model's largest batch ({max_batch}); "
                        f"lower --max-batch or rebuild the engine with a larger batch size")
    return batch
