"""fit(): one training path for train and al, hooks, torchrun (2 CPU processes, gloo), the retraining guard."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch

from msmine.loop.cli import main
from msmine.train.config import ALConfig, TrainConfig
from msmine.train.fit import HookBase, fit, steps_for
from msmine.train.workspace import fit_model_to_dataset, open_split, prepared_pairs
from tests.train_model.test_train_model_tiny_dataset import make_dataset

TINY = ["--device", "cpu", "--set", "batch_size=2", "--set", "model.input_size=[64,96]"]


def tiny_cfg(**changes) -> TrainConfig:
    cfg = TrainConfig()
    cfg.model.input_size = (64, 96)
    cfg.batch_size = 2
    cfg.device = "cpu"
    cfg.data.val_split = ""
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def test_al_and_train_produce_the_same_model(tmp_path):
    """`msmine al` trains through fit() exactly like `msmine train` (same seed, data, epochs -> same weights).

    Before fit(), al counted an epoch as ceil(pairs / batch) steps and train as floor(...): 3 pairs,
    batch 2, 2 epochs were 4 steps in al and 2 in train.
    """
    from msmine.train.al import ALRunner
    from msmine.train.checkpoint import read_checkpoint

    data = make_dataset(tmp_path / "d", pairs=3)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY, "--set", "epochs=2",
                 "--set", "seed=5", "--set", "data.val_split="]) == 0
    trained = read_checkpoint(tmp_path / "run" / "last.pt")

    cfg = ALConfig(train=tiny_cfg(seed=5), min_cycle_steps=0)
    train_set, test_set = open_split(data, "train"), open_split(data, "test")
    fit_model_to_dataset(cfg.train, train_set)
    runner = ALRunner(train_set, test_set, cfg, torch.device("cpu"), tmp_path / "al", progress=False)
    model = runner._new_model(5)
    runner._fit(model, [0, 1, 2], seed=5, epochs=2)
    assert trained["step"] == steps_for(2, 3, 2) == 2
    for key, value in model.state_dict().items():
        assert torch.equal(value, trained["model"][key]), key


class Recorder(HookBase):
    def __init__(self):
        self.calls = []

    def before_train(self):
        self.calls.append("before_train")

    def before_step(self):
        self.calls.append(f"before_step{self.trainer.step}")

    def after_step(self):
        self.calls.append(f"after_step{self.trainer.step}")
        if self.trainer.step == 2:
            raise KeyboardInterrupt  # stands for a failed step / Ctrl-C

    def after_train(self):
        self.calls.append("after_train")


def test_hooks_run_in_order_and_after_train_runs_when_a_step_fails(tmp_path):
    data = make_dataset(tmp_path / "d", pairs=2)
    cfg = tiny_cfg(max_steps=5)
    dataset = open_split(data, "train")
    fit_model_to_dataset(cfg, dataset)
    hook = Recorder()
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, prepared_pairs(dataset, cfg, train=True), hooks=[hook])
    assert hook.calls == ["before_train", "before_step0", "after_step1", "before_step1", "after_step2",
                          "after_train"]


# -- torchrun: two CPU processes, gloo, one model ---------------------------------------------------


class Seen(torch.utils.data.Dataset):
    """Records which pairs this rank drew."""

    def __init__(self, base):
        self.base, self.keys = base, []

    def __len__(self):
        return len(self.base)

    def __getitem__(self, key):
        self.keys.append(key)
        return self.base[key]


def _rank(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    cfg = tiny_cfg(max_steps=3, seed=1, batch_size=4)  # 2 pairs per rank (batch norm needs 2)
    dataset = open_split(data, "train")
    fit_model_to_dataset(cfg, dataset)
    pairs = Seen(prepared_pairs(dataset, cfg, train=True))
    result = fit(cfg, pairs, out=out)
    torch.save({"params": {k: v.detach().clone() for k, v in result.model.named_parameters()},
                "buffers": {k: v.clone() for k, v in result.model.named_buffers()},
                "keys": pairs.keys, "written": [str(p) for p in result.written], "steps": result.steps},
               os.path.join(out, f"rank{rank}.result"))


def test_two_gloo_processes_train_one_model(tmp_path):
    from msmine.train.checkpoint import read_checkpoint

    data = make_dataset(tmp_path / "d", pairs=4)
    out = tmp_path / "ddp"
    out.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_rank, args=(2, port, str(data), str(out)), nprocs=2, join=True)
    r0, r1 = (torch.load(out / f"rank{r}.result", weights_only=False) for r in (0, 1))
    assert r0["steps"] == r1["steps"] == 3
    for key, value in r0["params"].items():  # one model: every parameter identical on both ranks
        assert torch.equal(value, r1["params"][key]), key
    for key, value in r0["buffers"].items():  # batch-norm statistics too (rank 0's)
        assert torch.equal(value, r1["buffers"][key]), key
    # each global batch of 4 was split: the ranks drew disjoint halves of the same epoch at every step
    assert len(r0["keys"]) == len(r1["keys"]) == 3 * 2
    for step in range(3):
        a, b = r0["keys"][2 * step : 2 * step + 2], r1["keys"][2 * step : 2 * step + 2]
        assert {e for e, _ in a} == {e for e, _ in b} == {step}  # 4 pairs: one step per epoch
        assert not {i for _, i in a} & {i for _, i in b}
    # only rank 0 wrote, once: last.pt and best.pt hold the shared model
    assert r1["written"] == [] and sorted(os.path.basename(p) for p in r0["written"]) == ["best.pt", "last.pt"]
    saved = read_checkpoint(out / "last.pt")
    assert saved["step"] == 3
    for key, value in r0["params"].items():
        assert torch.equal(value, saved["model"][key]), key
    cfg = tiny_cfg(seed=1)  # and it trained: the parameters moved away from the seeded initial ones
    fit_model_to_dataset(cfg, open_split(data, "train"))
    from msmine.train.models import build_model

    torch.manual_seed(1)
    fresh = dict(build_model(cfg.model).named_parameters())
    assert any(not torch.equal(fresh[k].detach(), v) for k, v in r0["params"].items())


# -- retraining: replay, validation set, the guard ----------------------------------------------------


@pytest.fixture()
def retrain_setup(tmp_path):
    previous = make_dataset(tmp_path / "previous", pairs=4)  # train/ and test/
    mined = make_dataset(tmp_path / "mined", pairs=2)
    import shutil

    shutil.rmtree(mined / "test")  # pulled pairs: a train split only
    assert main(["train", "--data", str(previous), "--out", str(tmp_path / "r0"), *TINY,
                 "--set", "max_steps=2", "--set", "data.val_split="]) == 0
    return previous, mined, tmp_path / "r0" / "last.pt"


def scripted_validation(monkeypatch, values):
    """Make validation report these fused AP50s in turn (the --init model's first)."""
    from msmine.train import fit as fit_module

    queue = list(values)

    def evaluate(self):
        value = queue.pop(0) if len(queue) > 1 else queue[0]
        return {"fused": {"all": {"AP50": value, "mAP": value / 2}}}

    monkeypatch.setattr(fit_module._Run, "evaluate", evaluate)


def test_retrain_with_replay_validates_on_the_previous_test_split(retrain_setup, tmp_path):
    previous, mined, ckpt = retrain_setup
    out = tmp_path / "r1"
    assert main(["train", "--data", str(mined), "--init", str(ckpt), "--replay", str(previous), "--out", str(out),
                 *TINY, "--set", "max_steps=2", "--force"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["train_pairs"] == 2 + 4  # the pulled pairs and the replayed ones
    assert report["val_set"] == f"{previous} test"
    assert report["init"]["value"] is not None and "fused_AP50" in report["val_flat"]


def test_retrain_without_a_validation_split_holds_pairs_out(retrain_setup, tmp_path):
    previous, mined, ckpt = retrain_setup
    out = tmp_path / "r1"
    # replay without a test split of its own: validation pairs are carved out of the replayed ones
    import shutil

    shutil.rmtree(previous / "test")
    assert main(["train", "--data", str(mined), "--init", str(ckpt), "--replay", str(previous), "--out", str(out),
                 *TINY, "--set", "max_steps=1", "--val-fraction", "0.25", "--force"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["train_pairs"] == 2 + 3 and report["val_set"].startswith("1 pairs held out of")


def test_retrain_refuses_a_worse_model_unless_forced(retrain_setup, tmp_path, monkeypatch, capsys):
    previous, mined, ckpt = retrain_setup
    scripted_validation(monkeypatch, [0.5, 0.2])
    out = tmp_path / "r1"
    args = ["train", "--data", str(mined), "--init", str(ckpt), "--replay", str(previous), "--out", str(out),
            *TINY, "--set", "max_steps=2"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "0.200" in err and "0.500" in err and "--force" in err
    assert not (out / "best.pt").exists() and (out / "last.pt").is_file()
    assert json.loads((out / "metrics.json").read_text())["refused"]

    scripted_validation(monkeypatch, [0.5, 0.2])
    assert main([*args, "--force"]) == 0
    assert (out / "best.pt").is_file()

    scripted_validation(monkeypatch, [0.2, 0.5])  # better than --init: published without --force
    assert main(args) == 0
    from msmine.train.checkpoint import read_checkpoint

    best = read_checkpoint(out / "best.pt")
    assert best["best_value"] == 0.5 and best["baseline_value"] == 0.2


def test_first_training_run_still_needs_its_validation_split(tmp_path, capsys):
    mined = make_dataset(tmp_path / "mined", pairs=2)
    import shutil

    shutil.rmtree(mined / "test")
    assert main(["train", "--data", str(mined), "--out", str(tmp_path / "o"), *TINY, "--set", "max_steps=1"]) == 1
    assert "no split 'test'" in capsys.readouterr().err


def test_fit_writes_the_training_curve_beside_the_run(tmp_path):
    """OUT/curve.csv has one row per step with a finite loss and the scheduled learning rate."""
    import csv

    data = make_dataset(tmp_path / "d", pairs=4)
    cfg = tiny_cfg(max_steps=3)
    cfg.optim.warmup_steps = 0
    dataset = open_split(data, "train")
    fit_model_to_dataset(cfg, dataset)
    pairs = prepared_pairs(dataset, cfg, train=True)
    fit(cfg, pairs, out=tmp_path / "run")
    rows = list(csv.DictReader((tmp_path / "run" / "curve.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(float(r["loss"]) > 0 for r in rows)  # NaN compares False
    assert float(rows[0]["lr"]) == pytest.approx(cfg.optim.lr)
    fit(cfg, pairs, out=tmp_path / "run")  # a fresh run replaces the earlier curve
    assert len(list(csv.DictReader((tmp_path / "run" / "curve.csv").open()))) == 3
