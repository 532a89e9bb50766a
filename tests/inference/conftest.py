"""The fake CUDA/TensorRT binding (tests/inference/fake_gpu.py) injected through sys.modules."""

from __future__ import annotations

import sys

import pytest

from tests.inference.fake_gpu import Recorder, make_modules


@pytest.fixture
def fake_gpu(monkeypatch) -> Recorder:
    rec = Recorder()
    for name, module in make_modules(rec).items():
        monkeypatch.setitem(sys.modules, name, module)
    return rec
