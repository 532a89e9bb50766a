"""Training on real MSRS pairs: the loss goes down; checkpoints round-trip."""

from __future__ import annotations

import pytest
import torch

from msmine.errors import UserError
from msmine.train.checkpoint import load_checkpoint, save_checkpoint
from msmine.train.config import TrainConfig
from msmine.train.trainer import Trainer, seed_everything
from msmine.train.workspace import fit_model_to_dataset, open_split, prepared_pairs


@pytest.mark.realdata
@pytest.mark.parametrize("task", ["detect", "segment"])
def test_loss_decreases_on_four_real_pairs(msrs_root, task):
    from msmine.train.models import build_model

    cfg = TrainConfig()
    cfg.model.task = task
    cfg.model.input_size = (96, 128)
    cfg.batch_size = 4
    cfg.data.augment = False
    cfg.optim.warmup_steps = 0
    cfg.optim.lr = 2e-3
    dataset = open_split(msrs_root, "train", limit=4)
    fit_model_to_dataset(cfg, dataset)
    seed_everything(0)
    model = build_model(cfg.model)
    trainer = Trainer(model, cfg, prepared_pairs(dataset, cfg, train=True), torch.device("cpu"))
    first = trainer.train(1, schedule_total=20)
    trainer.train(16, schedule_total=20, schedule_offset=1)
    last = trainer.train(3, schedule_total=20, schedule_offset=17)
    assert last < 0.7 * first, (first, last)


def test_checkpoint_round_trip_and_errors(tmp_path):
    from msmine.train.models import build_model

    cfg = TrainConfig()
    cfg.model.input_size = (64, 64)
    model = build_model(cfg.model)
    path = save_checkpoint(tmp_path / "m.pt", model, None, epoch=2, step=7, train_config=cfg)
    loaded, meta = load_checkpoint(path)
    assert meta["step"] == 7 and meta["task"] == "detect" and meta["input_size"] == [64, 64]
    assert meta["class_names"] == ["person", "bicycle", "car"] and "normalization" in meta
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not an msmine checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


@pytest.mark.realdata
def test_same_seed_same_training(msrs_root):
    from msmine.train.models import build_model

    def run(workers: int):
        cfg = TrainConfig()
        cfg.model.input_size = (64, 96)
        cfg.batch_size = 2
        cfg.data.workers = workers
        dataset = open_split(msrs_root, "train", limit=4)
        fit_model_to_dataset(cfg, dataset)
        seed_everything(3)
        model = build_model(cfg.model)
        losses = [Trainer(model, cfg, prepared_pairs(dataset, cfg, train=True), torch.device("cpu")).train(3)]
        return losses, model.state_dict()

    (a, wa), (b, wb) = run(0), run(1)
    assert a == b
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
