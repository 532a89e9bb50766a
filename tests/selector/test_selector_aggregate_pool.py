"""Scale-balanced aggregation and pool selection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msmine import selector


def test_scale_balanced_mean_one_image():
    big = np.zeros((40, 40))  # 1,600 zeros: a plain mean would be ~0
    small = np.ones((2, 2))
    assert selector.scale_balanced_mean([big, small], batched=False) == pytest.approx(0.5)
    plain = np.concatenate([big.ravel(), small.ravel()]).mean()
    assert plain < 0.01


def test_scale_balanced_mean_batch():
    level0 = np.stack([np.zeros((8, 8, 3)), np.ones((8, 8, 3))])  # [2, 8, 8, 3]
    level1 = np.stack([np.ones((2, 2, 3)), np.ones((2, 2, 3))])
    out = selector.scale_balanced_mean([level0, level1])
    np.testing.assert_allclose(out, [0.5, 1.0])


@pytest.mark.parametrize(
    ("levels", "message"),
    [([], "at least one level"), ([np.zeros((0,))], "non-empty"), ([np.zeros((2, 3)), np.zeros((3, 3))], None)],
)
def test_scale_balanced_mean_errors(levels, message):
    if message is None:
        with pytest.raises(ValueError, match="leading batch axis"):
            selector.scale_balanced_mean(levels, batched=True)
    else:
        with pytest.raises(ValueError, match=message):
            selector.scale_balanced_mean(levels)


SELECT_CASES = [
    ([0.1, 0.9, 0.5], 2, [1, 2]),
    ([0.5, 0.5, 0.5], 2, [0, 1]),  # ties: earlier wins
    ([0.2, 0.7, 0.7, 0.1], 3, [1, 2, 0]),
    ([0.3], 5, [0]),
    ([0.3, 0.4], 0, []),
]


@pytest.mark.parametrize(("scores", "b", "expected"), SELECT_CASES)
def test_select_top(scores, b, expected):
    ids, chosen = selector.select_top(scores, b)
    assert ids == expected
    assert list(chosen) == [scores[i] for i in expected]


def test_select_top_with_ids_and_errors():
    ids, _ = selector.select_top([0.1, 0.3], 1, ids=["a", "b"])
    assert ids == ["b"]
    with pytest.raises(ValueError, match="expected 2 ids"):
        selector.select_top([0.1, 0.3], 1, ids=["a"])
    with pytest.raises(ValueError, match="1-D"):
        selector.select_top([[0.1]], 1)
    with pytest.raises(ValueError, match="integer >= 0"):
        selector.select_top([0.1], -1)
    with pytest.raises(ValueError, match="NaN"):
        selector.select_top([float("nan")], 1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=40), st.integers(0, 45))
def test_select_top_matches_a_stable_sort(scores, b):
    ids, _ = selector.select_top(scores, b)
    expected = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:b]
    assert ids == expected
