"""`msmine al --val-fraction F [--evaluate-on val]`: the pool and evaluation sets of the mining
experiment (validation blocks carved out of the train split), so `msmine al` reproduces its cells.

Tiny and real: MSRS pairs, the small backbone at 64x80, 16 train pairs (4 held out), 2 + 2 labelled.
"""

from __future__ import annotations

import json
import os

import pytest

from msmine.loop.cli import main

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _al(msrs_root, out, *extra):
    return main(["al", "--data", str(msrs_root), "--task", "detect", "--strategies", "random,inconsistency",
                 "--initial", "2", "--step", "2", "--budget", "4", "--seeds", "1", "--reference", "no",
                 "--out", str(out), "--device", "cpu",
                 "--set", "data.limit=16", "--set", "data.val_limit=3", "--set", "min_cycle_steps=1",
                 "--set", "cycle_epochs=1", "--set", "model.input_size=[64,80]", "--set", "batch_size=2",
                 "--set", "eval_splits=[all]", *extra])


@pytest.mark.realdata
def test_validation_blocks_are_held_out_of_the_pool_and_evaluated_on(msrs_root, tmp_path):
    from msmine.train.config import TrainConfig
    from msmine.train.workspace import AL_VAL_SEED, al_splits, carve, open_split

    dcfg = TrainConfig().data
    dcfg.limit, dcfg.val_limit = 16, 3
    train_all, pool, evaluation = al_splits(msrs_root, dcfg, 0.25, "val")
    _, held = carve(open_split(msrs_root, "train", limit=16), 0.25, AL_VAL_SEED)
    assert evaluation.ids == held.ids and len(pool) == 12 and len(evaluation) == 4
    assert set(pool.ids) | set(evaluation.ids) == set(train_all.ids) and not set(pool.ids) & set(evaluation.ids)
    _, same_pool, test = al_splits(msrs_root, dcfg, 0.25, "test")  # the final figures: same pool, test split
    assert same_pool.ids == pool.ids and len(test) == 3 and not set(test.ids) & set(train_all.ids)

    out = tmp_path / "val"
    assert _al(msrs_root, out, "--val-fraction", "0.25", "--evaluate-on", "val") == 0
    run = json.loads((out / "state" / "run.json").read_text())
    assert run["pool"] == 12 and run["test"] == 4
    for name in ("random", "inconsistency"):
        picks = json.loads((out / f"labelled_{name}_seed0.json").read_text())
        assert len(picks) == 4 and set(picks) <= set(pool.ids)  # never a held-out pair


@pytest.mark.realdata
@pytest.mark.parametrize("extra, message", [
    (["--evaluate-on", "val"], "--evaluate-on val needs a validation part: give --val-fraction"),
    (["--val-fraction", "1.5"], "--val-fraction must lie in (0, 1), got 1.5"),
    (["--val-fraction", "-0.1"], "--val-fraction must lie in [0, 1), got -0.1"),
])
def test_bad_validation_settings_are_one_line(msrs_root, tmp_path, capsys, extra, message):
    assert _al(msrs_root, tmp_path / "bad", *extra) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.realdata
def test_msmine_al_gives_the_mining_experiments_cells(msrs_root, tmp_path):
    """docs/results.md's claim: `msmine al --val-fraction 0.2` reproduces bench/mining_experiment.py's cells."""
    import csv

    from tests.train_model.test_train_mining_experiment import _module

    mod = _module()
    tiny = ["--set", "data.limit=20", "--set", "data.val_limit=3", "--set", "min_cycle_steps=1", "--set",
            "cycle_epochs=1", "--set", "model.input_size=[64,80]", "--set", "batch_size=2", "--set",
            "eval_splits=[all]", "--set", "model.backbone=small", "--device", "cpu"]
    bench, al = tmp_path / "bench", tmp_path / "al"
    assert mod.main(["--data", str(msrs_root), "--task", "detect", "--phase", "test", "--strategies",
                     "random,inconsistency", "--initial", "2", "--step", "2", "--budget", "4", "--seeds", "1",
                     "--out", str(bench), "--csv", str(tmp_path / "cmp.csv"), *tiny]) == 0
    assert main(["al", "--data", str(msrs_root), "--task", "detect", "--strategies", "random,inconsistency",
                 "--initial", "2", "--step", "2", "--budget", "4", "--seeds", "1", "--reference", "no",
                 "--val-fraction", "0.2", "--out", str(al), *tiny]) == 0

    def cells(folder):
        with open(folder / "curves.csv") as fh:
            return {(r["strategy"], r["cycle"]): (r["labelled"], r["fused_AP50"], r["train_loss"])
                    for r in csv.DictReader(fh)}

    assert cells(bench) == cells(al) and len(cells(al)) == 4
    for name in ("random", "inconsistency"):
        f = f"labelled_{name}_seed0.json"
        assert json.loads((bench / f).read_text()) == json.loads((al / f).read_text())
