"""The fast CPU recipes (configs/*_lite0_cached.yaml: frozen, cached ImageNet Lite0) train on real
MSRS pairs; the segmentation one's class-weighted CE settles its weights from the training masks."""

from __future__ import annotations

from pathlib import Path

import pytest

from msmine.loop.cli import main
from msmine.train.checkpoint import read_checkpoint

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = ["--device", "cpu", "--set", "max_steps=2", "--set", "model.input_size=[64,96]", "--set", "batch_size=2",
        "--set", "data.limit=6", "--set", "data.val_split=", "--set", "data.feature_cache_mb=64"]


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_fast_recipe_trains_on_real_pairs(msrs_root, tmp_path, task):
    run = tmp_path / task
    rc = main(["train", "--data", str(msrs_root), "--config", str(CONFIGS / f"{task}_lite0_cached.yaml"),
               "--out", str(run), *TINY])
    assert rc == 0
    ckpt = read_checkpoint(run / "last.pt")
    assert ckpt["step"] == 2 and ckpt["task"] == task
    mc = ckpt["model_config"]
    assert mc["freeze_stages"] == 7 and mc["pretrained"] == "imagenet"
    if task == "segment":
        assert mc["seg_loss"] == "wce"
        weights = mc["seg_class_weights"]
        assert len(weights) == mc["num_classes"] == len(mc["class_names"])
        # the background (most pixels) weighs least; classes absent from 6 masks get the bound 1/ln 1.02
        assert min(weights) == weights[0] and max(weights) <= 1 / 0.0198 + 1e-6
