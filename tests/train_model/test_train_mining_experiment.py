"""bench/mining_experiment.py --smoke on real MSRS pairs: every strategy kind runs the protocol (one
initial set and cycle-0 model per seed, carved validation blocks), and the comparison CSV holds the
paired differences against random with its command in a header comment."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("mining_experiment", REPO / "bench" / "mining_experiment.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.realdata
def test_smoke_compares_every_strategy_with_random_on_real_pairs(msrs_root, tmp_path, capsys):
    """The two seeds run as two invocations (--seed-list), then --merge compares them together."""
    mod = _module()
    out, table = tmp_path / "run", tmp_path / "cmp.csv"
    common = ["--smoke", "--data", str(msrs_root), "--device", "cpu", "--csv", str(table),
              "--strategies", "random_dedup,inconsistency.topk", "--dedupe-window", "2",
              "--diversity", "kcenter", "--candidate-factor", "2", "--strata", "illumination",
              "--quotas", "proportional", "--coverage-cycles", "1", "--variant-k", "5", "--dedupe-hash", "12"]
    for seed in (0, 1):
        assert mod.main([*common, "--seed-list", str(seed), "--out", str(tmp_path / f"seed{seed}")]) == 0
    # the fully supervised reference as its own folder, merged like a seed folder
    assert mod.main([*common, "--reference", "only", "--out", str(tmp_path / "ref")]) == 0
    merged = ",".join(str(tmp_path / f"seed{seed}") for seed in (0, 1))
    png = tmp_path / "curves.png"
    assert mod.main([*common, "--merge", f"{merged},{tmp_path / 'ref'}", "--png", str(png), "--out", str(out)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = table.read_text().splitlines()
    assert lines[0].startswith("# command: python bench/mining_experiment.py --smoke")
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert {r["strategy"] for r in rows} == {"random", "random_dedup", "inconsistency.topk"}
    assert {int(r["cycle"]) for r in rows} == {0, 1, 2} and {r["seeds"] for r in rows} == {"2"}
    for r in rows:
        if r["cycle"] == "0":  # one initial set and cycle-0 model per seed, for every strategy
            assert float(r["diff_mean"]) == 0.0
        if r["strategy"] == "random":
            assert float(r["diff_mean"]) == 0.0 and float(r["auc_diff_mean"]) == 0.0
        assert 0.0 <= float(r["dup_rate"]) <= 1.0
    with open(out / "curves.csv") as fh:
        curves = list(csv.DictReader(fh))
    assert list(curves[0])[:4] == ["strategy", "seed", "cycle", "labelled"] and "fused_AP50" in curves[0]
    assert len(curves) == 2 * 3 * 3 + 1 and {c["seed"] for c in curves} == {"0", "1"}
    (reference,) = [c for c in curves if c["strategy"] == "supervised"]
    assert int(reference["labelled"]) == 26 and reference["seed"] == "0"  # the whole smoke pool, first seed
    # folders of another experiment, or one seed twice, are refused in one line
    capsys.readouterr()
    other = [a if a != "5" else "6" for a in common]
    assert mod.main([*other, "--merge", merged, "--out", str(tmp_path / "m2")]) != 0
    assert "run settings differ" in capsys.readouterr().err
    assert mod.main([*common, "--merge", f"{tmp_path / 'seed0'},{tmp_path / 'seed0'}",
                     "--out", str(tmp_path / "m3")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "more than one folder" in err[0]
    # class weights need a class-weighted variant: one line naming them
    assert mod.main([*common, "--class-weights", "car=2", "--out", str(tmp_path / "m4")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--class-weights: applies to the detection_sum" in err[0]


def test_paired_differences_auc_and_duplicates():
    mod = _module()
    mean, std, p = mod._paired([0.5, 0.7, 0.6], [0.4, 0.5, 0.5])
    assert mean == pytest.approx(0.4 / 3) and std == pytest.approx(0.057735, abs=1e-5) and 0 < p < 0.1
    assert mod._auc([(50, 0.2), (100, 0.4), (150, 0.4)]) == pytest.approx((0.3 * 50 + 0.4 * 50) / 100)
    assert mod.duplicate_rate(["00010D", "00012D", "00030D", "00011N"], 3) == pytest.approx(0.5)


def test_area_under_the_curve_counts_only_seeds_that_reached_every_cycle():
    mod = _module()

    def row(strategy, seed, cycle, value):
        return {"strategy": strategy, "seed": seed, "cycle": cycle, "labelled": 50 * (cycle + 1), "fused_AP50": value}

    rows = [row("random", s, c, 0.1 * (c + 1)) for s in (0, 1) for c in (0, 1, 2)]
    rows += [row("entropy", 0, c, 0.1 * (c + 1) + 0.01 * c) for c in (0, 1, 2)]
    rows += [row("entropy", 1, c, 0.1 * (c + 1) + 0.05) for c in (0, 1)]  # seed 1 still running
    table = mod.compare(rows, "fused_AP50", "detect", "val", {}, 3)
    entropy = {r["cycle"]: r for r in table if r["strategy"] == "entropy"}
    assert entropy[1]["seeds"] == 2 and entropy[2]["seeds"] == 1
    # seed 0 only: differences 0, 0.01, 0.02 at 50, 100, 150 labelled -> mean over the span 0.01
    assert entropy[2]["auc_diff_mean"] == pytest.approx(0.01)
    assert entropy[2]["auc"] == pytest.approx(0.2 + 0.01)


def test_mining_table_reads_curves_and_picks(tmp_path, capsys):
    """bench/mining_table.py: the docs' tables from a curves file (paired differences, area, pairwise)."""
    spec = importlib.util.spec_from_file_location("mining_table", REPO / "bench" / "mining_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    from msmine.train.al import write_curves

    rows = [{"strategy": "supervised", "seed": 0, "cycle": 0, "labelled": 9, "fused_AP50": 0.5}]
    for seed, (r, e) in enumerate([(0.20, 0.25), (0.22, 0.26), (0.21, 0.27)]):
        for strategy, last in (("random", r), ("entropy", e), ("inconsistency", e - 0.01)):
            rows += [{"strategy": strategy, "seed": seed, "cycle": 0, "labelled": 2, "fused_AP50": 0.1},
                     {"strategy": strategy, "seed": seed, "cycle": 1, "labelled": 4, "fused_AP50": last}]
    curves = tmp_path / "curves.csv"
    write_curves(curves, rows)
    run = tmp_path / "run"
    run.mkdir()
    (run / "labelled_entropy_seed0.json").write_text(json.dumps(["00001D", "00002D", "00003N", "00009N"]))
    assert table.main([str(curves), "--runs", str(run), "--initial", "2"]) == 0
    text = capsys.readouterr().out
    assert "| 4 | 0.210 ± 0.010 | 0.260 ± 0.010 | 0.250 ± 0.010 |" in text
    assert "Fully supervised reference (the same recipe on the whole pool): 0.500" in text
    assert "| entropy | +0.050 ± 0.010 (p 0.013) | +0.025 ± 0.005 [3] |" in text  # area over 2..4: half of it
    assert "| entropy - inconsistency | +0.010 ± 0.000 (p 0.000) |" in text
    assert "- random: 0.200 / 0.220 / 0.210" in text
    assert "| entropy | 100 % | 0.00 |" in text  # the picks 00003N, 00009N: both night, 6 frames apart
    assert table.main([str(tmp_path / "missing.csv")]) != 0
    assert capsys.readouterr().err.strip().endswith("no such curves file")
