"""Fixtures of the edge runtime tests: tiny contract models and a loopback stub server."""

from __future__ import annotations

import pytest

from tests.edge_runtime.contract_models import build_contract_model
from tests.edge_runtime.stub_server import StubServer


@pytest.fixture(scope="session")
def small_model(tmp_path_factory):
    """A contract model for 160x120 synthetic frames."""
    return build_contract_model(tmp_path_factory.mktemp("models") / "small.onnx", height=120, width=160, levels=2, k=6)


@pytest.fixture(scope="session")
def clip_model(tmp_path_factory):
    """A contract model at the real clips' 640x480."""
    return build_contract_model(tmp_path_factory.mktemp("models") / "clip.onnx", height=480, width=640, levels=3, k=8)


@pytest.fixture
def stub_server():
    with StubServer(tokens={"tok"}) as srv:
        yield srv
