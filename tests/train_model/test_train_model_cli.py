"""The CLIs on real MSRS data, tiny: train (+ resume), evaluate, al; user errors are one line."""

from __future__ import annotations

import csv
import json

import pytest

from msmine.loop.cli import main

TINY = ["--set", "model.input_size=[96,128]", "--set", "batch_size=2", "--set", "data.limit=4",
        "--set", "data.val_limit=4"]


@pytest.fixture(scope="module")
def trained(msrs_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    rc = main(["train", "--data", str(msrs_root), "--task", "detect", "--out", str(out), "--device", "cpu",
               "--set", "max_steps=3", *TINY])
    assert rc == 0
    return out


@pytest.mark.realdata
def test_train_writes_checkpoints_config_and_metrics(trained):
    for name in ("last.pt", "best.pt", "config.yaml", "metrics.json"):
        assert (trained / name).is_file(), name
    report = json.loads((trained / "metrics.json").read_text())
    assert report["steps"] == 3
    assert set(report["val"]) == {"visible", "thermal", "fused"}
    assert {"mAP", "AP50", "AP75", "LAMR"} <= set(report["val"]["fused"]["all"])
    assert "max_steps: 3" in (trained / "config.yaml").read_text()


@pytest.mark.realdata
def test_resume_continues_from_last_checkpoint(trained, msrs_root):
    rc = main(["train", "--data", str(msrs_root), "--task", "detect", "--out", str(trained), "--device", "cpu",
               "--set", "max_steps=5", "--resume", *TINY])
    assert rc == 0
    from msmine.train.checkpoint import read_checkpoint

    assert read_checkpoint(trained / "last.pt")["step"] == 5
    assert json.loads((trained / "metrics.json").read_text())["steps"] == 5


@pytest.mark.realdata
def test_init_fine_tunes_from_another_runs_weights(trained, msrs_root, tmp_path):
    from msmine.train.checkpoint import read_checkpoint

    out = tmp_path / "ft"
    # A different input size on the command line loses to the checkpoint's architecture.
    rc = main(["train", "--data", str(msrs_root), "--task", "detect", "--out", str(out), "--device", "cpu",
               "--init", str(trained / "last.pt"), "--set", "max_steps=1", "--set", "optim.lr=0",
               "--set", "optim.weight_decay=0", "--set", "data.val_split=",
               *TINY, "--set", "model.input_size=[64,64]"])
    assert rc == 0
    start, tuned = read_checkpoint(trained / "last.pt"), read_checkpoint(out / "last.pt")
    assert tuned["step"] == 1 and tuned["input_size"] == start["input_size"]
    for key, value in start["model"].items():  # learning rate 0: exactly the initial weights
        if "running_" not in key and "num_batches" not in key:  # batch-norm statistics do move
            assert (tuned["model"][key] == value).all(), key
    assert main(["train", "--data", str(msrs_root), "--out", str(out), "--init", str(trained / "last.pt"),
                 "--resume", *TINY]) == 1


@pytest.mark.realdata
def test_evaluate_reports_each_branch(trained, msrs_root, tmp_path, capsys):
    out = tmp_path / "m.json"
    rc = main(["evaluate", str(trained / "best.pt"), "--data", str(msrs_root), "--limit", "6", "--out", str(out),
               "--device", "cpu"])
    assert rc == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert set(metrics) == {"visible", "thermal", "fused"}
    assert 0.0 <= metrics["thermal"]["all"]["AP50"] <= 1.0
    assert "fused" in capsys.readouterr().out


@pytest.mark.realdata
def test_al_tiny_writes_curves(msrs_root, tmp_path):
    out = tmp_path / "al"
    rc = main(["al", "--data", str(msrs_root), "--task", "detect", "--strategies", "random,inconsistency,inconsistency_diverse",
               "--initial", "2", "--step", "2", "--budget", "4", "--seeds", "1", "--out", str(out), "--device", "cpu",
               "--set", "data.limit=8", "--set", "data.val_limit=4", "--set", "min_cycle_steps=1",
               "--set", "cycle_epochs=1", "--set", "supervised_epochs=1", "--set", "model.input_size=[96,128]",
               "--set", "batch_size=2", "--set", "eval_splits=[all]"])
    assert rc == 0
    with open(out / "curves.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:4] == ["strategy", "seed", "cycle", "labelled"]
    assert "fused_AP50" in rows[0]
    got = {(r["strategy"], r["cycle"], r["labelled"]) for r in rows}
    assert {("random", "0", "2"), ("random", "1", "4"), ("inconsistency", "1", "4"), ("supervised", "0", "8"),
            ("inconsistency_diverse", "1", "4")} <= got
    assert (out / "curves.png").stat().st_size > 1000
    picked = json.loads((out / "labelled_inconsistency_seed0.json").read_text())
    assert len(picked) == len(set(picked)) == 4


@pytest.mark.realdata
def test_al_class_weights_and_hash_dedupe_run(msrs_root, tmp_path, caplog):
    """--class-weights inverse on a class-weighted variant, with --dedupe-hash: a tiny run end to end,
    the weights logged at the selection; a bad class name is one line."""
    import logging

    out = tmp_path / "al"
    args = ["al", "--data", str(msrs_root), "--task", "detect", "--strategies", "random_dedup,inconsistency.detection_sum",
            "--initial", "2", "--step", "2", "--budget", "4", "--seeds", "1", "--device", "cpu", "--dedupe-hash", "4",
            "--variant-floor", "0", "--set", "data.limit=8", "--set", "data.val_limit=4", "--set", "min_cycle_steps=1",
            "--set", "cycle_epochs=1", "--set", "model.input_size=[96,128]", "--set", "batch_size=2",
            "--set", "eval_splits=[all]", "--reference", "no"]
    with caplog.at_level(logging.INFO):
        assert main([*args, "--class-weights", "inverse", "--out", str(out)]) == 0
    assert "class weights (inverse frequency of 2 labelled pairs)" in caplog.text
    with open(out / "curves.csv") as fh:
        got = {(r["strategy"], r["labelled"]) for r in csv.DictReader(fh)}
    assert {("random_dedup", "4"), ("inconsistency.detection_sum", "4")} <= got
    assert main([*args, "--class-weights", "zebra=2", "--out", str(tmp_path / "b")]) == 1


def test_bad_data_path_is_one_line_exit_1(tmp_path, capsys):
    for cmd in (["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
                ["al", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]):
        assert main(cmd) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "nope" in err and len(err.splitlines()) == 1


def test_bad_checkpoint_and_options_are_user_errors(tmp_path, capsys):
    (tmp_path / "x.pt").write_bytes(b"junk")
    assert main(["evaluate", str(tmp_path / "x.pt"), "--data", str(tmp_path)]) == 1
    assert "x.pt" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--set", "bogus=1"]) == 1
    assert "bogus" in capsys.readouterr().err
    assert main(["al", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--strategies", "magic"]) == 1
    assert "magic" in capsys.readouterr().err


@pytest.mark.realdata
def test_retrain_on_pulled_pairs_replays_msrs_and_validates_on_its_test_split(trained, msrs_root, tmp_path):
    """The README's step 6 on real pairs: pulled pairs have no test split (was: "no split 'test' in data/mined")."""
    from msmine.loop.simulate import link_pairs, train_ids

    mined = link_pairs(msrs_root, train_ids(msrs_root)[-3:], tmp_path / "mined")  # train/ only, like msmine pull
    out = tmp_path / "r1"
    rc = main(["train", "--data", str(mined), "--init", str(trained / "last.pt"), "--replay", str(msrs_root),
               "--replay-pairs", "4", "--out", str(out), "--device", "cpu", "--set", "max_steps=2", "--force", *TINY])
    assert rc == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["train_pairs"] == 3 + 4
    assert report["val_set"] == f"{msrs_root} test"
    assert report["init"]["value"] is not None and (out / "best.pt").is_file()
