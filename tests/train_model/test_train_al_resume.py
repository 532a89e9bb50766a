"""`msmine al` resume: a run killed mid-way continues at the next cycle with the same picks.

Tiny and real: MSRS pairs, the small backbone at 64x80, 12 pool pairs, 2 + 2 + 2 labelled.
"""

from __future__ import annotations

import csv
import json
import os

import pytest

from msmine.loop.cli import main

os.environ.setdefault("OMP_NUM_THREADS", "1")

STRATEGIES = "random,inconsistency.topk"


def _al(msrs_root, out, *extra):
    return main(["al", "--data", str(msrs_root), "--task", "detect", "--strategies", STRATEGIES,
                 "--initial", "2", "--step", "2", "--budget", "6", "--seeds", "1", "--reference", "no",
                 "--out", str(out), "--device", "cpu", "--variant-k", "5",
                 "--set", "data.limit=12", "--set", "data.val_limit=2", "--set", "min_cycle_steps=1",
                 "--set", "cycle_epochs=1", "--set", "model.input_size=[64,80]", "--set", "batch_size=2",
                 "--set", "eval_splits=[all]", *extra])


def _picks(out):
    names = {"random": "random", "inconsistency.topk": "inconsistency.topk"}
    return {s: json.loads((out / f"labelled_{f}_seed0.json").read_text()) for s, f in names.items()}


def _rows(out):
    with open(out / "curves.csv") as fh:
        return [(r["strategy"], r["cycle"], r["labelled"]) for r in csv.DictReader(fh)]


@pytest.mark.realdata
def test_killed_run_resumes_at_the_next_cycle_with_the_same_picks(msrs_root, tmp_path, monkeypatch):
    from msmine.train.al import ALRunner

    whole = tmp_path / "whole"
    assert _al(msrs_root, whole) == 0
    expected = _picks(whole)
    assert all(len(v) == len(set(v)) == 6 for v in expected.values())

    fits = []
    real_fit = ALRunner._fit

    def fit_then_die(self, *args, **kwargs):
        fits.append(args[1:])
        if len(fits) == 5:  # cycle 0, random 1-2, inconsistency.topk 1, then killed in its cycle 2
            raise KeyboardInterrupt
        return real_fit(self, *args, **kwargs)

    broken = tmp_path / "broken"
    monkeypatch.setattr(ALRunner, "_fit", fit_then_die)
    assert _al(msrs_root, broken) == 130
    assert len(_rows(broken)) == 3 + 2  # random 0-2 written, inconsistency.topk 0-1 only
    monkeypatch.setattr(ALRunner, "_fit", real_fit)

    resumed = []
    monkeypatch.setattr(ALRunner, "_fit", lambda self, *a, **k: resumed.append(len(a[1])) or real_fit(self, *a, **k))
    assert _al(msrs_root, broken) == 0
    assert resumed == [6]  # no cycle 0, no random, no topk cycle 1: only topk's cycle 2
    assert _picks(broken) == expected
    rows = _rows(broken)
    assert len(rows) == len(set(rows)) == 6 and sorted(rows) == sorted(_rows(whole))

    # other settings on the same --out: one clear line, nothing overwritten
    assert _al(msrs_root, broken, "--variant-k", "7") == 1
