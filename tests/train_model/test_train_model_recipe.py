"""The lite recipes' choices reach the training step: the loss options (focal + GIoU) and the
backbone learning-rate multiplier (two optimizer groups, the backbone's lr scaled)."""

from __future__ import annotations

import pytest
import torch

from msmine.train import trainer as trainer_mod
from msmine.train.config import ModelConfig, TrainConfig
from msmine.train.models import build_model

SIZE = (64, 96)


@pytest.mark.realdata
def test_lite_recipe_reaches_the_step(msrs_root, monkeypatch):
    from msmine.train.batching import collate
    from msmine.train.workspace import fit_model_to_dataset, open_split, prepared_pairs

    torch.set_num_threads(1)
    cfg = TrainConfig()
    cfg.model = ModelConfig(task="detect", backbone="lite0", input_size=SIZE, pretrained="",
                            cls_loss="focal", box_loss="giou", freeze_stages=2)
    cfg.data.augment = False
    cfg.optim.backbone_lr_mult = 0.1
    dataset = open_split(msrs_root, "train", limit=2)
    fit_model_to_dataset(cfg, dataset)
    model = build_model(cfg.model)
    seen = {}
    real_loss = trainer_mod.model_loss

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "model_loss", spy)
    tr = trainer_mod.Trainer(model, cfg, dataset, torch.device("cpu"))
    assert [g["name"] for g in tr.optimizer.param_groups] == ["backbone", "rest"]
    batch = collate([p for p in prepared_pairs(dataset, cfg, train=True)])
    tr.run_step(batch, lr=1e-3)
    assert seen["cls_loss"] == "focal" and seen["box_loss"] == "giou"
    assert [g["lr"] for g in tr.optimizer.param_groups] == pytest.approx([1e-4, 1e-3])


def test_default_recipe_keeps_one_group_in_parameter_order():
    cfg = TrainConfig()
    cfg.model = ModelConfig(task="segment", input_size=SIZE)
    model = build_model(cfg.model)
    opt = trainer_mod.make_optimizer(model, cfg)
    assert len(opt.param_groups) == 1
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in model.parameters()]
