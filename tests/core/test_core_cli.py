"""The msmine dispatcher: user errors are one line and exit 1; the selector runs end to end."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np

from msmine.loop.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "msmine.loop.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_select_example_prints_ranked_csv():
    out = run_cli("select", "--example", "-b", "4")
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0] == ["rank", "id", "inconsistency"]
    scores = [float(r[2]) for r in rows[1:]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)


def test_select_on_a_file_matches_the_library(tmp_path):
    from msmine import selector
    from msmine.loop.cli_select import example_pool

    pool = example_pool(n=12, seed=5)
    np.savez(tmp_path / "pool.npz", **pool)
    out_csv = tmp_path / "sel.csv"
    assert main(["select", "--predictions", str(tmp_path / "pool.npz"), "-b", "3", "--out", str(out_csv)]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    per_level = [selector.inconsistency(pool[f"visible_{lv}"], pool[f"thermal_{lv}"]) for lv in range(3)]
    expected, _ = selector.select_top(selector.scale_balanced_mean(per_level), 3, ids=list(pool["ids"]))
    assert [r["id"] for r in rows] == [str(i) for i in expected]


def test_user_errors_are_one_line_and_exit_1(tmp_path):
    out = run_cli("select", "--predictions", str(tmp_path / "missing.npz"))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == f"error: predictions file not found: {tmp_path / 'missing.npz'}"
    assert "Traceback" not in out.stderr
    bad = tmp_path / "bad.npz"
    np.savez(bad, visible_0=np.full((2, 3), 1.5), thermal_0=np.zeros((2, 3)))
    out = run_cli("select", "--predictions", str(bad))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "expected probabilities in [0, 1]" in out.stderr
