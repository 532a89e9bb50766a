"""Segmentation losses: plain CE and OHEM (hard pixels only), on hand-built logits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from msmine.errors import UserError
from msmine.train.config import ModelConfig
from msmine.train.losses import SEG_IGNORE, segmentation_loss
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
