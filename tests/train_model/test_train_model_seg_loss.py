"""Segmentation losses: plain CE, OHEM (hard pixels only) and class-weighted CE, on hand-built logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from msmine.config import load_config
from msmine.errors import UserError
from msmine.train.batching import mask_pixel_counts
from msmine.train.config import ModelConfig, TrainConfig
from msmine.train.fit import settle_class_weights
from msmine.train.losses import SEG_IGNORE, enet_class_weights, segmentation_loss
from msmine.train.models import build_model


def logits_for(masks: torch.Tensor, confident: torch.Tensor, classes: int = 3) -> torch.Tensor:
    """Logits at the mask size: confidently right where ``confident``, uniform elsewhere."""
    target = masks.clamp(max=classes - 1)
    right = F.one_hot(target, classes).permute(0, 3, 1, 2).float() * 10.0
    return torch.where(confident.unsqueeze(1), right, torch.zeros_like(right))


def test_ohem_is_plain_ce_when_every_pixel_is_hard():
    masks = torch.randint(0, 3, (2, 8, 8))
    logits = torch.zeros(2, 3, 8, 8)  # p(true) = 1/3 < 0.7 everywhere
    ce = segmentation_loss(logits, masks, "ce")
    assert ce == pytest.approx(math.log(3))
    assert segmentation_loss(logits, masks, "ohem") == pytest.approx(float(ce))


def test_ohem_averages_over_the_hard_pixels_when_the_easy_majority_would_drown_them():
    masks = torch.randint(0, 3, (1, 16, 16))
    confident = torch.ones(1, 16, 16, dtype=torch.bool)
    confident[0, :4, :8] = False  # 32 of 256 pixels (1/8) are uncertain
    logits = logits_for(masks, confident)
    ce = float(segmentation_loss(logits, masks, "ce"))
    ohem = float(segmentation_loss(logits, masks, "ohem"))
    assert ce == pytest.approx(math.log(3) * 32 / 256, rel=1e-3)
    assert ohem == pytest.approx(math.log(3), rel=1e-3)  # only the 32 hard pixels count


def test_ohem_keeps_at_least_the_hardest_sixteenth_and_ignores_padding():
    masks = torch.randint(0, 3, (1, 16, 16))
    masks[0, 8:] = SEG_IGNORE  # half the pixels are padding
    logits = logits_for(masks, torch.ones(1, 16, 16, dtype=torch.bool))  # all easy
    loss = segmentation_loss(logits, masks, "ohem")
    assert torch.isfinite(loss) and float(loss) < 1e-3  # the hardest 8 of 128 valid pixels, all easy
    all_padding = torch.full((1, 4, 4), SEG_IGNORE)
    assert float(segmentation_loss(torch.zeros(1, 3, 4, 4), all_padding, "ohem")) == 0.0


def test_unknown_seg_loss_is_refused_by_the_model_config():
    cfg = ModelConfig(task="segment", num_classes=2, class_names=["a", "b"], seg_loss="dice")
    with pytest.raises(UserError, match="model.seg_loss must be one of ce, ohem"):
        build_model(cfg)


def test_wce_is_the_class_weighted_mean_of_the_pixel_losses():
    masks = torch.tensor([[[0, 0, 0, 1]]])  # three background pixels, one rare pixel
    logits = torch.zeros(1, 2, 1, 4)  # every pixel's loss is ln 2
    logits[0, 0, 0, 3] = 5.0  # ... but the rare pixel is confidently wrong
    pixel = F.cross_entropy(logits, masks, reduction="none").flatten()
    weights = (1.0, 10.0)
    expected = (pixel[:3].sum() * 1.0 + pixel[3] * 10.0) / (3 * 1.0 + 10.0)
    assert float(segmentation_loss(logits, masks, "wce", weights)) == pytest.approx(float(expected), rel=1e-5)
    assert float(segmentation_loss(logits, masks, "wce", (1.0, 1.0))) == pytest.approx(
        float(segmentation_loss(logits, masks, "ce")), rel=1e-6)
    with pytest.raises(ValueError, match="one class weight per class"):
        segmentation_loss(logits, masks, "wce", (1.0, 2.0, 3.0))


def test_enet_weights_follow_one_over_log_of_the_class_share():
    weights = enet_class_weights([900, 100, 0])
    assert weights[0] == pytest.approx(1 / math.log(1.02 + 0.9))
    assert weights[1] == pytest.approx(1 / math.log(1.02 + 0.1))
    assert weights[2] == pytest.approx(1 / math.log(1.02))  # an absent class: the bound, ~50
    assert weights[0] < weights[1] < weights[2]


class FakeSample:
    def __init__(self, mask):
        self.mask = mask


class FakePairs:
    def __init__(self, masks):
        self.masks = masks

    def __len__(self):
        return len(self.masks)

    def prepared(self, i):
        return FakeSample(self.masks[i])


def test_wce_weights_are_taken_from_the_training_masks_once_and_recorded_in_the_config():
    cfg = load_config(TrainConfig, None, ["model.task=segment", "model.num_classes=3",
                                         "model.class_names=[a,b,c]", "model.seg_loss=wce"])
    model = build_model(cfg.model)
    masks = [np.array([[0, 0, 1, SEG_IGNORE]], dtype=np.uint8), np.array([[0, 0, 0, 2]], dtype=np.uint8)]
    assert list(mask_pixel_counts(FakePairs(masks), 3)) == [5, 1, 1]  # padding (255) is not counted
    settle_class_weights(model, cfg, FakePairs(masks))
    assert model.config.seg_class_weights == pytest.approx(enet_class_weights([5, 1, 1]))
    assert cfg.model.seg_class_weights == model.config.seg_class_weights
    settle_class_weights(model, cfg, FakePairs([np.zeros((1, 4), dtype=np.uint8)]))  # already settled: kept
    assert model.config.seg_class_weights == pytest.approx(enet_class_weights([5, 1, 1]))


def test_bad_seg_class_weights_are_refused_by_the_model_config():
    cfg = ModelConfig(task="segment", num_classes=2, class_names=["a", "b"], seg_loss="wce",
                      seg_class_weights=(1.0, 2.0, 3.0))
    with pytest.raises(UserError, match="model.seg_class_weights must be 2 positive numbers"):
        build_model(cfg)
