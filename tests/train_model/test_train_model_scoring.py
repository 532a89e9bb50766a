"""The torch score (train.scoring) equals selector's numpy reference on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msmine import selector
from msmine.train.config import ModelConfig
from msmine.train.models import build_model
from msmine.train.scoring import entropy, inconsistency, level_maps, score_outputs


def random_probs(rng, shape, classes):
    logits = rng.normal(size=(*shape, classes)) * 3
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


@pytest.mark.parametrize("kind", ["binary", "categorical"])
def test_elementwise_scores_match_selector(kind):
    rng = np.random.default_rng(0)
    if kind == "binary":
        pv, pt = rng.random((5, 7)), rng.random((5, 7))
        pv[0, 0], pt[0, 0] = 0.0, 1.0  # extremes: exactly 1 bit
    else:
        pv, pt = random_probs(rng, (5, 7), 4), random_probs(rng, (5, 7), 4)
    ours = inconsistency(torch.tensor(pv), torch.tensor(pt), kind).numpy()
    ref = selector.inconsistency(pv, pt, kind=kind)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    np.testing.assert_allclose(entropy(torch.tensor(pv), kind).numpy(), selector.entropy(pv, kind=kind), atol=1e-6)
    if kind == "binary":
        assert abs(ours[0, 0] - 1.0) < 1e-6


@pytest.mark.parametrize("kind", ["categorical", "binary"])
def test_image_scores_match_selector_scale_balanced_mean(kind):
    model = build_model(ModelConfig(input_size=(64, 96))).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(torch.rand(3, 3, 64, 96), torch.rand(3, 1, 64, 96))
        for b in out.values():  # sharper, more varied probabilities than an untrained head gives
            b["logits"] = torch.randn_like(b["logits"]) * 3
    scores = score_outputs(out, model.level_shapes, "detect", kind)

    p = {b: torch.softmax(o["logits"], -1).numpy().astype(np.float64) for b, o in out.items()}
    if kind == "binary":
        p = {b: 1.0 - v[..., 0] for b, v in p.items()}
    per_anchor = selector.inconsistency(p["visible"], p["thermal"], kind=kind)
    intra = selector.entropy(p["fused"], kind=kind)

    def levels(per):  # [N, A] -> per level [N, h, w, k]
        res, start = [], 0
        for h, w, k in model.level_shapes:
            res.append(per[:, start:start + h * w * k].reshape(-1, h, w, k))
            start += h * w * k
        return res

    np.testing.assert_allclose(scores["inconsistency"].numpy(), selector.scale_balanced_mean(levels(per_anchor)),
                               atol=1e-5)
    np.testing.assert_allclose(scores["entropy"].numpy(), selector.scale_balanced_mean(levels(intra)), atol=1e-5)
    maps = scores["maps"]
    assert [tuple(m.shape) for m in maps] == [(3, h, w) for h, w, _ in model.level_shapes]
    np.testing.assert_allclose(maps[0].numpy(), levels(per_anchor)[0].mean(-1), atol=1e-5)


def test_segmentation_score_matches_selector():
    rng = np.random.default_rng(1)
    logits = {b: torch.tensor(rng.normal(size=(2, 9, 4, 5)) * 2, dtype=torch.float32)
              for b in ("visible", "thermal", "fused")}
    out = {b: {"logits": v} for b, v in logits.items()}
    scores = score_outputs(out, [(4, 5, 1)], "segment", "categorical")
    p = {b: torch.softmax(v, 1).permute(0, 2, 3, 1).double().numpy() for b, v in logits.items()}
    ref = selector.scale_balanced_mean([selector.inconsistency(p["visible"], p["thermal"], kind="categorical")])
    np.testing.assert_allclose(scores["inconsistency"].numpy(), ref, atol=1e-5)
    assert len(level_maps(torch.zeros(2, 4, 5), [(4, 5, 1)], "segment")) == 1


def test_log_domain_categorical_scores_equal_the_probability_form():
    import torch

    from msmine.train.scoring import (
        branch_log_probabilities,
        branch_probabilities,
        categorical_scores,
        entropy,
        inconsistency,
    )

    gen = torch.Generator().manual_seed(0)
    outputs = {b: {"logits": torch.randn(2, 500, 4, generator=gen) * 6} for b in ("visible", "thermal", "fused")}
    inter, intra = categorical_scores(branch_log_probabilities(outputs, "detect"))
    probs = branch_probabilities(outputs, "detect", "categorical")
    torch.testing.assert_close(inter, inconsistency(probs["visible"], probs["thermal"], "categorical"),
                               atol=2e-6, rtol=0)
    torch.testing.assert_close(intra, entropy(probs["fused"], "categorical"), atol=2e-6, rtol=0)
