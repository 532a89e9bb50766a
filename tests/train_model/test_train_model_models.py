"""Model contract: output shapes per task and backbone, anchors, box coding, pretrained weights."""

from __future__ import annotations

import pytest
import torch

from msmine.errors import UserError
from msmine.train.anchors import cxcywh_to_xyxy, decode_boxes, encode_boxes, match_anchors
from msmine.train.config import ModelConfig
from msmine.train.models import build_model

DET = dict(num_classes=3, class_names=["person", "bicycle", "car"])
SEG = dict(num_classes=9, class_names=[f"c{i}" for i in range(9)])


@pytest.mark.parametrize("backbone,size", [("small", (64, 96)), ("vgg16", (64, 64))])
def test_detection_outputs_follow_the_contract(backbone, size):
    model = build_model(ModelConfig(task="detect", backbone=backbone, input_size=size, **DET)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size), torch.rand(2, 1, *size))
    a = sum(h * w * k for h, w, k in model.level_shapes)
    assert model.anchors.shape == (a, 4)
    assert set(out) == {"visible", "thermal", "fused"}
    for branch in out.values():
        assert branch["logits"].shape == (2, a, 4)
        assert branch["deltas"].shape == (2, a, 4)
    assert model.task == "detect" and model.input_size == size and model.class_names == DET["class_names"]
    assert len(model.level_shapes) == (5 if backbone == "small" else 6)
    assert bool((model.anchors >= 0).all() and (model.anchors <= 1).all())


@pytest.mark.parametrize("backbone,size", [("small", (64, 96)), ("vgg16", (64, 64))])
def test_segmentation_outputs_follow_the_contract(backbone, size):
    model = build_model(ModelConfig(task="segment", backbone=backbone, input_size=size, **SEG)).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, *size), torch.rand(1, 1, *size))
    h, w, k = model.level_shapes[0]
    for branch in out.values():
        assert branch["logits"].shape == (1, 9, h, w)
    assert (h, w, k) == (size[0] // 8, size[1] // 8, 1)


def test_modality_branches_see_only_their_own_modality():
    model = build_model(ModelConfig(input_size=(64, 64), **DET)).eval()
    v = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a = model(v, torch.rand(1, 1, 64, 64))
        b = model(v, torch.rand(1, 1, 64, 64))
    assert torch.allclose(a["visible"]["logits"], b["visible"]["logits"])
    assert not torch.allclose(a["thermal"]["logits"], b["thermal"]["logits"])
    assert not torch.allclose(a["fused"]["logits"], b["fused"]["logits"])


def test_encode_decode_round_trip_and_matching():
    model = build_model(ModelConfig(input_size=(64, 96), **DET))
    anchors = model.anchors
    boxes = torch.tensor([[0.1, 0.2, 0.3, 0.6], [0.5, 0.5, 0.9, 0.7]])
    classes, deltas = match_anchors(anchors, boxes, torch.tensor([0, 2]))
    pos = classes > 0
    assert set(classes[pos].tolist()) == {1, 3}  # class ids shifted by one (0 = background)
    decoded = decode_boxes(anchors[pos], deltas[pos])
    errors = [min(float((d - b).abs().max()) for b in boxes) for d in decoded]
    assert max(errors) < 1e-4  # every positive decodes exactly to one of the boxes
    again = encode_boxes(anchors, cxcywh_to_xyxy(anchors))
    assert torch.allclose(again, torch.zeros_like(again), atol=1e-5)


def test_bad_model_config_is_a_user_error():
    with pytest.raises(UserError, match="backbone"):
        build_model(ModelConfig(backbone="resnet", **DET))
    with pytest.raises(UserError, match="class_names"):
        build_model(ModelConfig(num_classes=2, class_names=["a"]))


def test_vgg16_imagenet_weights_load_by_torchvision_keys(tmp_path):
    cfg = ModelConfig(backbone="vgg16", input_size=(64, 64), **DET)
    reference = build_model(cfg)
    state = {f"features.{k}": torch.randn_like(v) for k, v in reference.visible_backbone.body.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # ignored
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    cfg.pretrained = str(path)
    model = build_model(cfg)
    assert torch.equal(model.visible_backbone.body[0].weight, state["features.0.weight"])
    assert torch.allclose(model.thermal_backbone.body[0].weight, state["features.0.weight"].mean(1, keepdim=True))
    assert torch.equal(model.thermal_backbone.body[28].bias, state["features.28.bias"])

    del state["features.28.bias"]
    torch.save(state, path)
    with pytest.raises(UserError, match="features.28.bias"):
        build_model(cfg)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="vgg16.pth"):
        build_model(cfg)
