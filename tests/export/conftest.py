"""Fixtures: a tiny random-init checkpoint (small backbone, 128x160) and its FP32 export."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from msmine.train.checkpoint import save_checkpoint
    from msmine.train.config import ModelConfig
    from msmine.train.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(input_size=(128, 160)))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, epoch=0, step=0)
    return path


@pytest.fixture(scope="session")
def fp32_export(tiny_checkpoint, msrs_root, tmp_path_factory):
    """`msmine export` of the tiny checkpoint with the default (dynamo) exporter at opset 17."""
    from msmine.loop.cli import main

    out = tmp_path_factory.mktemp("export") / "model.onnx"
    rc = main(["export", str(tiny_checkpoint), "--out", str(out), "--calib-data", str(msrs_root),
               "--max-candidates", "50"])
    assert rc == 0
    return out
