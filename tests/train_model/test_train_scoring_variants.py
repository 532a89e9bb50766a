"""The torch score variants (train.scoring) equal the numpy references (selector) on the same inputs.

Tolerance: 1e-5 absolute (torch computes the map variants in float32, numpy in float64; the
detection variants are float64 on both sides and agree to 1e-9).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from msmine import selector, strategies
from msmine.train import scoring

os.environ.setdefault("OMP_NUM_THREADS", "1")
TOL = 1e-5


def _maps(rng, n=3, shapes=((16, 20), (8, 10), (2, 3))):
    return [rng.random((n, h, w)).astype(np.float32) ** 3 for h, w in shapes]


def test_registry_variants_are_the_selectors():
    assert strategies.VARIANT_NAMES == selector.VARIANTS


@pytest.mark.parametrize("k", [1, 7, 50, 10_000])
@pytest.mark.parametrize("variant", ["paper", "topk", "topk_level"])
def test_map_variants_equal_numpy(variant, k):
    rng = np.random.default_rng(k)
    maps = _maps(rng)
    got = scoring.variant_scores(variant, [torch.from_numpy(m) for m in maps], scoring.VariantSettings(k=k)).numpy()
    for i in range(maps[0].shape[0]):
        want = selector.frame_score(variant, [m[i] for m in maps], params=selector.VariantParams(k=k))
        assert got[i] == pytest.approx(want, abs=TOL)


@pytest.mark.parametrize("k", [None, 1, 5, 400])
@pytest.mark.parametrize("weights", [None, (1.0, 3.0, 0.0, 0.5, 2.0)])
def test_region_variants_equal_numpy(k, weights):
    rng = np.random.default_rng(0)
    values = rng.random((4, 12, 16)).astype(np.float32)
    predicted = rng.integers(0, 5, (4, 12, 16))
    predicted[1] = 2  # one image predicts a single class
    variant = "region" if k is None else "region_topk"
    settings = scoring.VariantSettings(k=k or 50, class_weights=weights)
    got = scoring.variant_scores(variant, [torch.from_numpy(values)], settings,
                                 predicted=torch.from_numpy(predicted), num_classes=5).numpy()
    params = selector.VariantParams(k=k or 50, class_weights=weights, num_classes=5)
    for i in range(4):
        want = selector.frame_score(variant, [values[i]], predicted=predicted[i], params=params)
        assert got[i] == pytest.approx(want, abs=TOL)


def _detections(rng, k):
    xy = rng.random((k, 2)) * 0.8
    wh = rng.random((k, 2)) * 0.3 + 0.002  # some boxes thinner than a cell
    return np.concatenate([xy, np.minimum(xy + wh, 1.0), rng.random((k, 1)), rng.integers(0, 3, (k, 1))], axis=1)


@pytest.mark.parametrize("variant", ["detection_sum", "detection_max"])
@pytest.mark.parametrize("level_sizes", [None, (0.05, 0.15, 0.5)])
@pytest.mark.parametrize("weights", [None, (1.0, 2.0, 0.25)])
def test_detection_variants_equal_numpy(variant, level_sizes, weights):
    rng = np.random.default_rng(3)
    maps = _maps(rng, n=4)
    dets = [_detections(rng, k) for k in (12, 1, 0, 30)]
    dets[1][:, 4] = 0.1  # below the floor: the image scores 0
    settings = scoring.VariantSettings(floor=0.4, class_weights=weights, level_sizes=level_sizes)
    got = scoring.variant_scores(variant, [torch.from_numpy(m) for m in maps], settings,
                                 detections=[torch.from_numpy(d) for d in dets]).numpy()
    params = selector.VariantParams(floor=0.4, class_weights=weights, level_sizes=level_sizes)
    for i, d in enumerate(dets):
        want = selector.frame_score(variant, [m[i] for m in maps], detections=d.reshape(-1, 6), params=params)
        assert got[i] == pytest.approx(want, abs=1e-9)
    assert got[1] == got[2] == 0.0 and got[0] > 0


def test_pooled_features_have_one_row_per_image():
    from msmine.train.config import ModelConfig
    from msmine.train.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(input_size=(64, 80))).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 80), torch.rand(2, 1, 64, 80))
    feats = scoring.pooled_features(out, model.level_shapes, "detect")
    assert feats.shape[0] == 2 and feats.shape[1] > 16 and torch.isfinite(feats).all()
