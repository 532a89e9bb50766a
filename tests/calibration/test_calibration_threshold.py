"""Upload-threshold calibration from recorded scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from msmine.calibration.threshold import load_scores, parse_rate, threshold_for_rate
from msmine.errors import UserError
from msmine.loop.cli import main


@pytest.mark.parametrize(
    "text, per_hour",
    [("100/hour", 100.0), ("100/h", 100.0), ("5/min", 300.0), ("0.5/s", 1800.0), ("2400/day", 100.0),
     ("10 / hours", 10.0), ("1e2/hour", 100.0)],
)
def test_parse_rate(text, per_hour):
    assert parse_rate(text) == pytest.approx(per_hour)


@pytest.mark.parametrize("text", ["100", "abc/hour", "100/fortnight", "0/hour", "-5/min"])
def test_parse_rate_rejects(text):
    with pytest.raises(UserError, match="target-rate"):
        parse_rate(text)


def test_threshold_gives_the_target_rate():
    rng = np.random.default_rng(0)
    scores = rng.beta(2, 8, size=108_000)  # one hour at 30 fps
    result = threshold_for_rate(scores, 100.0, 30.0)
    assert int((scores > result.threshold).sum()) == 100
    assert result.expected_per_hour == pytest.approx(100.0)
    assert result.fraction == pytest.approx(100 / 108_000)
    # twice the stream length at the same rate: same fraction, twice the count
    doubled = threshold_for_rate(np.concatenate([scores, scores]), 100.0, 30.0)
    assert doubled.threshold == pytest.approx(result.threshold)


def test_threshold_edge_cases():
    scores = np.linspace(0, 1, 11)
    assert threshold_for_rate(scores, 1e9, 1.0).threshold < 0.0  # more than the frame rate: all pass
    few = threshold_for_rate(scores, 1.0, 30.0)  # fraction too small for 11 scores: the maximum
    assert few.threshold == 1.0 and few.expected_per_hour == 0.0
    with pytest.raises(UserError, match="fps"):
        threshold_for_rate(scores, 1.0, 0.0)


def test_load_scores_formats(tmp_path):
    values = np.array([0.1, 0.5, 0.25])
    np.save(tmp_path / "s.npy", values)
    (tmp_path / "s.csv").write_text("id,inconsistency,entropy\na,0.1,9\nb,0.5,9\nc,0.25,9\n")
    (tmp_path / "s.jsonl").write_text("".join(json.dumps({"id": i, "score": v}) + "\n" for i, v in enumerate(values)))
    for name in ("s.npy", "s.csv", "s.jsonl"):
        got, _ = load_scores(tmp_path / name)
        np.testing.assert_allclose(got, values)
    got, key = load_scores(tmp_path / "s.csv", column="entropy")
    assert key == "entropy" and got.tolist() == [9, 9, 9]


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("s.csv", "id,foo\na,1\n", "no score column"),
        ("s.csv", "score\n0.1\nabc\n", "not a number"),
        ("s.jsonl", '{"score": 1}\nnot json\n', "not JSON"),
        ("s.jsonl", "", "no scores"),
        ("s.txt", "1\n", "expected .npy"),
        ("s.csv", "score\nnan\n", "non-finite"),
    ],
)
def test_load_scores_errors(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UserError, match=match):
        load_scores(path)


def test_cli_threshold_writes_yaml(tmp_path, capsys):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "scores.npy", rng.uniform(size=36_000))  # 20 minutes at 30 fps
    out = tmp_path / "thr.yaml"
    rc = main(["calibrate", "threshold", "--scores", str(tmp_path / "scores.npy"), "--target-rate", "6/min",
               "--fps", "30", "--out", str(out)])
    assert rc == 0
    data = yaml.safe_load(out.read_text())
    assert data["target_per_hour"] == 360.0 and data["expected_per_hour"] == pytest.approx(360.0)
    assert 0.99 < data["threshold"] < 1.0
    assert "threshold" in capsys.readouterr().out


def test_cli_threshold_user_errors(tmp_path, capsys):
    assert main(["calibrate", "threshold", "--scores", str(tmp_path / "none.csv"), "--target-rate", "1/h"]) == 1
    assert "scores file not found" in capsys.readouterr().err
    assert main(["calibrate", "threshold", "--model", str(tmp_path / "m.onnx"), "--target-rate", "1/h"]) == 1
    assert "--source" in capsys.readouterr().err
