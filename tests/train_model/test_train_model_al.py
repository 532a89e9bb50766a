"""Active-learning pieces without training: cycle sizes, diverse selection, curves I/O, configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from msmine.config import load_config
from msmine.errors import UserError
from msmine.train.al import (
    aggregate,
    cycle_sizes,
    diverse_top,
    merge_runs,
    read_curves,
    summary_table,
    write_curves,
)
from msmine.train.config import ALConfig, TrainConfig

REPO = Path(__file__).resolve().parents[2]


def test_cycle_sizes():
    assert cycle_sizes(50, 50, 300) == [50, 100, 150, 200, 250, 300]
    assert cycle_sizes(25, 25, 60) == [25, 50, 60]
    assert cycle_sizes(10, 5, 10) == [10]
    with pytest.raises(UserError):
        cycle_sizes(0, 5, 10)
    with pytest.raises(UserError):
        cycle_sizes(20, 5, 10)


def test_diverse_top_takes_one_pair_per_run_of_near_duplicates():
    rng = np.random.default_rng(0)
    runs = rng.random((10, 8))
    features = np.repeat(runs, 5, axis=0) + rng.random((50, 8)) * 1e-3  # 10 "videos" of 5 frames
    scores = rng.random(50)
    scores[:5] += 10  # one run scores highest: plain top-10 would take all of it
    picked = diverse_top(scores, features, 10, seed=0)
    assert len(picked) == len(set(picked)) == 10
    assert len({p // 5 for p in picked}) == 10
    assert picked[0] == int(np.argmax(scores))


def test_curves_round_trip_summary_and_merge(tmp_path):
    rows = [
        {"strategy": s, "seed": seed, "cycle": c, "labelled": 10 * (c + 1), "fused_AP50": 0.1 * (c + 1) + 0.01 * seed}
        for s in ("random", "inconsistency") for seed in (0, 1) for c in (0, 1)
    ]
    rows.append({"strategy": "supervised", "seed": 0, "cycle": 0, "labelled": 100, "fused_AP50": 0.5})
    for i, part in enumerate((rows[:4], rows[4:])):
        (tmp_path / f"r{i}").mkdir()
        write_curves(tmp_path / f"r{i}" / "curves.csv", part)
    merged = merge_runs([tmp_path / "r0", tmp_path / "r1", tmp_path / "missing"], tmp_path / "all", ["fused_AP50"])
    assert len(merged) == len(rows)
    back = read_curves(tmp_path / "all" / "curves.csv")
    assert back[0]["strategy"] == "random" and back[0]["labelled"] == 10
    agg = aggregate(back, "fused_AP50")
    mean, std, n = agg["random"][20]
    assert n == 2 and abs(mean - 0.205) < 1e-9 and abs(std - 0.005) < 1e-9
    table = summary_table(back, "fused_AP50")
    assert "| 20 |" in table and "Fully supervised (100 pairs): 0.500" in table
    assert (tmp_path / "all" / "curves.png").stat().st_size > 1000
    with pytest.raises(UserError):
        merge_runs([tmp_path / "missing"], tmp_path / "none", ["fused_AP50"])


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_load(path):
    if path.name.startswith("pretrain_"):
        from msmine.train.pretrain import PretrainConfig

        cfg = load_config(PretrainConfig, path)
        assert cfg.max_steps > 0
        return
    cls = ALConfig if path.name.startswith("al_") else TrainConfig
    cfg = load_config(cls, path)
    model = cfg.train.model if cls is ALConfig else cfg.model
    assert model.task in ("detect", "segment")
