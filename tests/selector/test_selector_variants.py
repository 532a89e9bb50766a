"""Score variants: top-k mean, detection-level inconsistency, segmentation regions, strata."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from msmine import selector

unit = st.floats(0.0, 1.0)

# -- top-k mean -----------------------------------------------------------------------------


def test_topk_mean_known_values():
    levels = [np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0])]
    assert selector.topk_mean(levels, 2, batched=False) == pytest.approx(7.0)  # (10 + 4) / 2
    assert selector.topk_mean(levels, 2, per_level=True, batched=False) == pytest.approx(6.75)  # (3.5 + 10) / 2
    assert selector.topk_mean(levels, 5, batched=False) == pytest.approx(4.0)  # all five
    assert selector.topk_mean(levels, 99, batched=False) == pytest.approx(4.0)
    assert selector.topk_mean(levels, 1, batched=False) == pytest.approx(10.0)


def test_topk_mean_batch_and_levels_of_any_shape():
    level0 = np.array([[[1.0, 2.0]], [[3.0, 4.0]]])  # [2, 1, 2]
    level1 = np.array([[5.0], [0.0]])  # [2, 1]
    np.testing.assert_allclose(selector.topk_mean([level0, level1], 1), [5.0, 4.0])
    np.testing.assert_allclose(selector.topk_mean([level0, level1], 2), [3.5, 3.5])
    np.testing.assert_allclose(selector.topk_mean([level0, level1], 1, per_level=True), [3.5, 2.0])


def test_topk_mean_reads_a_frame_of_the_paper_detector():
    rng = np.random.default_rng(0)
    levels = [rng.random((h, w, k)) for h, w, k in [(64, 80, 4), (32, 40, 6), (2, 3, 4)]]
    flat = np.sort(np.concatenate([lv.ravel() for lv in levels]))[::-1]
    assert selector.topk_mean(levels, 50, batched=False) == pytest.approx(flat[:50].mean())


@settings(max_examples=150, deadline=None)
@given(st.lists(arrays(np.float64, st.integers(1, 30), elements=unit), min_size=1, max_size=4), st.integers(1, 40),
       st.booleans(), st.floats(0.1, 10.0), st.integers(0, 2**31 - 1))
def test_topk_mean_properties(levels, k, per_level, scale, seed):
    value = selector.topk_mean(levels, k, per_level=per_level, batched=False)
    allv = np.concatenate(levels)
    assert allv.min() - 1e-12 <= value <= allv.max() + 1e-12
    # between the plain (or scale-balanced) mean and the max
    baseline = selector.scale_balanced_mean(levels, batched=False) if per_level else allv.mean()
    assert value >= baseline - 1e-12
    # larger k never raises it
    assert selector.topk_mean(levels, k + 1, per_level=per_level, batched=False) <= value + 1e-12
    # permutation within a level and positive scaling
    rng = np.random.default_rng(seed)
    shuffled = [rng.permutation(lv) for lv in levels]
    assert selector.topk_mean(shuffled, k, per_level=per_level, batched=False) == pytest.approx(value, abs=1e-12)
    scaled = [lv * scale for lv in levels]
    assert selector.topk_mean(scaled, k, per_level=per_level, batched=False) == pytest.approx(value * scale, rel=1e-9)
    # k covering every prediction: the plain mean / the paper's scale-balanced mean
    assert selector.topk_mean(levels, allv.size, batched=False) == pytest.approx(allv.mean(), abs=1e-12)
    assert selector.topk_mean(levels, allv.size, per_level=True, batched=False) == pytest.approx(
        selector.scale_balanced_mean(levels, batched=False), abs=1e-12)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: selector.topk_mean([np.ones(3)], 0), "k: expected an integer >= 1, got 0"),
    (lambda: selector.topk_mean([np.ones(3)], 2.5), "k: expected an integer >= 1"),
    (lambda: selector.topk_mean([np.ones(3)], True), "k: expected an integer >= 1"),
    (lambda: selector.topk_mean([], 1), "at least one level"),
    (lambda: selector.topk_mean([np.zeros(0)], 1), "non-empty"),
    (lambda: selector.topk_mean([np.array([np.nan])], 1), "no NaN"),
    (lambda: selector.topk_mean([np.zeros((2, 3)), np.zeros((3, 3))], 1, batched=True), "leading batch axis of 2"),
])
def test_topk_mean_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- detection level ------------------------------------------------------------------------

GRID = np.arange(16.0).reshape(4, 4)  # cell centres at 0.125, 0.375, 0.625, 0.875


@pytest.mark.parametrize(("box", "expected"), [
    ([0.0, 0.0, 0.5, 0.5], 2.5),  # rows 0-1, cols 0-1: (0 + 1 + 4 + 5) / 4
    ([0.6, 0.6, 0.61, 0.61], 10.0),  # covers no centre: the cell holding the box centre, (2, 2)
    ([0.1, 0.3, 0.9, 0.32], 5.5),  # thin: row 1 (its centre row), all four columns
    ([0.125, 0.125, 0.375, 0.375], 2.5),  # centres on the border count (closed intervals)
    ([0.0, 0.0, 1.0, 1.0], 7.5),  # whole image: the map mean
    ([-0.2, -0.1, 1.3, 0.2], 1.5),  # clipped to [0, 1]: row 0, all columns
])
def test_box_cell_values_known_values(box, expected):
    assert selector.box_cell_values([box], [GRID])[0] == pytest.approx(expected)


def test_box_cell_values_levels():
    coarse = np.array([[1.0, 0.0], [0.0, 0.0]])
    boxes = [[0.0, 0.0, 0.5, 0.5], [0.6, 0.6, 0.61, 0.61]]
    # all levels: the mean over levels (2.5 and 1; 10 and 0)
    np.testing.assert_allclose(selector.box_cell_values(boxes, [GRID, coarse]), [1.75, 5.0])
    # level_sizes: a 0.5-sized box goes to the 0.6 level, a 0.01-sized box to the 0.1 level
    np.testing.assert_allclose(selector.box_cell_values(boxes, [GRID, coarse], level_sizes=[0.1, 0.6]), [1.0, 10.0])
    # a tie (box size the geometric mean of both sizes) goes to the finer level
    assert selector.box_cell_values([[0.0, 0.0, 0.2, 0.2]], [GRID, coarse], level_sizes=[0.1, 0.4])[0] == 0.0
    assert selector.box_cell_values(np.zeros((0, 4)), [GRID]).shape == (0,)


@settings(max_examples=150, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=unit),
       arrays(np.float64, st.tuples(st.integers(1, 12), st.just(4)), elements=unit))
def test_box_cell_values_properties(level, corners):
    boxes = np.concatenate([np.minimum(corners[:, :2], corners[:, 2:]), np.maximum(corners[:, :2], corners[:, 2:])], 1)
    values = selector.box_cell_values(boxes, [level])
    assert values.shape == (boxes.shape[0],)
    assert np.all(values >= level.min() - 1e-12) and np.all(values <= level.max() + 1e-12)
    # each box's value does not depend on the other boxes, nor on their order
    np.testing.assert_allclose(selector.box_cell_values(boxes[::-1], [level]), values[::-1])
    # brute force: the mean of the covered cells
    h, w = level.shape
    for (x1, y1, x2, y2), got in zip(boxes, values):
        rows = [i for i in range(h) if y1 <= (i + 0.5) / h <= y2] or [min(int((y1 + y2) / 2 * h), h - 1)]
        cols = [j for j in range(w) if x1 <= (j + 0.5) / w <= x2] or [min(int((x1 + x2) / 2 * w), w - 1)]
        assert got == pytest.approx(level[np.ix_(rows, cols)].mean(), abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 50), st.integers(0, 20), st.sampled_from(["binary", "categorical"]), st.integers(0, 2**31 - 1))
def test_anchor_inconsistency_equals_the_full_map_at_the_anchors(a, k, kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "binary":
        pv, pt = rng.random(a), rng.random(a)
    else:
        pv, pt = rng.dirichlet(np.ones(4), size=(1, a)), rng.dirichlet(np.ones(4), size=(1, a))
    idx = rng.integers(0, a, k)
    full = selector.inconsistency(pv, pt, kind=kind)
    np.testing.assert_allclose(selector.anchor_inconsistency(pv, pt, idx, kind=kind),
                               selector.anchor_values(full, idx), atol=1e-12)


def test_anchor_values():
    np.testing.assert_allclose(selector.anchor_values([0.1, 0.2, 0.3], [2, 0]), [0.3, 0.1])
    per_anchor = np.arange(12.0).reshape(2, 3, 2)  # read in flat (level, y, x, anchor) order
    np.testing.assert_allclose(selector.anchor_values(per_anchor, np.array([11, 5])), [11.0, 5.0])
    assert selector.anchor_values([0.1], np.zeros(0, dtype=int)).shape == (0,)


VALUES = [0.5, 0.2, 0.9, 0.4]
CONF = [0.9, 0.6, 0.3, 0.5]
CLASSES = [0, 1, 0, 2]
WEIGHTS = [1.0, 2.0, 3.0]


@pytest.mark.parametrize(("reduce", "weights", "expected"), [
    ("sum", WEIGHTS, 2.1),  # detections 0, 1, 3 pass the 0.5 floor: 0.5*1 + 0.2*2 + 0.4*3
    ("max", WEIGHTS, 1.2),
    ("mean", WEIGHTS, 0.35),  # 2.1 / (1 + 2 + 3)
    ("sum", None, 1.1),
    ("max", None, 0.5),
    ("mean", None, 1.1 / 3),
])
def test_aggregate_detections_known_values(reduce, weights, expected):
    got = selector.aggregate_detections(VALUES, CONF, CLASSES, floor=0.5, class_weights=weights, reduce=reduce)
    assert got == pytest.approx(expected)


def test_aggregate_detections_empty_and_floor():
    assert selector.aggregate_detections(VALUES, CONF, CLASSES, floor=0.95) == 0.0
    assert selector.aggregate_detections(VALUES, CONF, CLASSES, floor=0.95, reduce="max", empty=-1.0) == -1.0
    assert selector.aggregate_detections([], [], [], floor=0.0) == 0.0
    # the floor is inclusive; a lower floor admits detection 2 too
    assert selector.aggregate_detections(VALUES, CONF, CLASSES, floor=0.3) == pytest.approx(2.0)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 15), st.integers(0, 2**31 - 1), st.floats(0.0, 1.0), st.floats(0.1, 10.0))
def test_aggregate_detections_properties(k, seed, floor, factor):
    rng = np.random.default_rng(seed)
    v, s, c = rng.random(k), rng.random(k), rng.integers(0, 3, k)
    w = rng.random(3)
    total = selector.aggregate_detections(v, s, c, floor=floor, class_weights=w)
    peak = selector.aggregate_detections(v, s, c, floor=floor, class_weights=w, reduce="max")
    mean = selector.aggregate_detections(v, s, c, floor=floor, class_weights=w, reduce="mean")
    assert 0.0 <= peak <= total + 1e-12
    assert 0.0 <= mean <= 1.0
    perm = rng.permutation(k)
    assert selector.aggregate_detections(v[perm], s[perm], c[perm], floor=floor, class_weights=w) == pytest.approx(total)
    # sum and max scale with the weights, the weighted mean does not
    assert selector.aggregate_detections(v, s, c, floor=floor, class_weights=w * factor) == pytest.approx(total * factor)
    assert selector.aggregate_detections(v, s, c, floor=floor, class_weights=w * factor,
                                         reduce="mean") == pytest.approx(mean)
    # a higher floor never raises the sum of non-negative values
    assert selector.aggregate_detections(v, s, c, floor=min(floor + 0.2, 1.0), class_weights=w) <= total + 1e-12


def test_detection_score_from_maps_and_from_anchors():
    det = np.array([
        [0.0, 0.0, 0.5, 0.5, 0.9, 0],  # value 2.5 (cells), 0.7 (anchor 1)
        [0.6, 0.6, 0.61, 0.61, 0.8, 1],  # value 10 (cells), 0.2 (anchor 0)
        [0.0, 0.0, 1.0, 1.0, 0.1, 0],  # below the floor
    ])
    assert selector.detection_score(det, maps=[GRID], floor=0.5) == pytest.approx(12.5)
    assert selector.detection_score(det, maps=[GRID], floor=0.5, reduce="max") == pytest.approx(10.0)
    assert selector.detection_score(det, maps=[GRID], floor=0.5, class_weights=[1.0, 0.5]) == pytest.approx(7.5)
    assert selector.detection_score(det, values=[0.2, 0.7, 0.1], anchor_index=[1, 0, 2]) == pytest.approx(0.9)
    # from per-anchor probabilities: the inconsistency at the detections' anchors only
    pv, pt = np.array([0.0, 0.5, 0.2, 0.9]), np.array([1.0, 0.5, 0.9, 0.9])
    det4 = det.copy()
    det4[2, 4] = 0.9
    expected = float(selector.inconsistency(0.0, 1.0) + selector.inconsistency(0.2, 0.9) + 0.0)
    assert selector.detection_score(det4, probabilities=(pv, pt), anchor_index=[0, 2, 1]) == pytest.approx(expected)
    # the exported graph's padding rows (score 0) fall below any positive floor
    padded = np.concatenate([det, np.zeros((5, 6))])
    assert selector.detection_score(padded, maps=[GRID], floor=0.5) == pytest.approx(12.5)


def test_detection_level_scores_ignore_a_night_offset_away_from_objects():
    # Night: the visible branch is unsure everywhere, so the background disagrees a little
    # everywhere; the paper's mean ranks it above a day frame with one strongly disagreeing object.
    day = np.zeros((8, 8))
    day[0:2, 0:2] = 0.9  # one object, strong disagreement
    night = np.full((8, 8), 0.3)
    night[4:6, 4:6] = 0.1  # its object: the branches agree
    day_det = np.array([[0.0, 0.0, 0.25, 0.25, 0.9, 0]])
    night_det = np.array([[0.5, 0.5, 0.75, 0.75, 0.9, 0]])
    assert selector.scale_balanced_mean([night], batched=False) > selector.scale_balanced_mean([day], batched=False)
    assert selector.detection_score(day_det, maps=[day]) > selector.detection_score(night_det, maps=[night])


@pytest.mark.parametrize(("call", "message"), [
    (lambda: selector.split_detections(np.zeros((3, 5))), r"\[K, 6\] array.*got shape \(3, 5\)"),
    (lambda: selector.split_detections(np.array([[0, 0, 1, 1, 0.5, 0.5]])), "non-integral"),
    (lambda: selector.split_detections(np.array([[0, 0, 1, 1, 0.5, -1]])), "class ids >= 0, got -1"),
    (lambda: selector.box_cell_values([[0.5, 0.0, 0.4, 1.0]], [GRID]), "x2 >= x1"),
    (lambda: selector.box_cell_values([[0.0, 0.0, 1.0]], [GRID]), r"\[K, 4\] array"),
    (lambda: selector.box_cell_values([[0.0, 0.0, np.nan, 1.0]], [GRID]), "finite"),
    (lambda: selector.box_cell_values([[0, 0, 1, 1]], []), "at least one level"),
    (lambda: selector.box_cell_values([[0, 0, 1, 1]], [np.zeros(4)]), r"\[h, w\] map, got shape \(4,\)"),
    (lambda: selector.box_cell_values([[0, 0, 1, 1]], [GRID * np.nan]), "without NaN"),
    (lambda: selector.box_cell_values([[0, 0, 1, 1]], [GRID], level_sizes=[0.1, 0.2]), "expected 1 sizes"),
    (lambda: selector.box_cell_values([[0, 0, 1, 1]], [GRID], level_sizes=[0.0]), "sizes > 0"),
    (lambda: selector.anchor_values([0.1, 0.2], [2]), r"indices in \[0, 2\), got \[2, 2\]"),
    (lambda: selector.anchor_values([0.1, 0.2], [0.5]), "integers"),
    (lambda: selector.anchor_values([], [0]), "non-empty"),
    (lambda: selector.aggregate_detections([0.1], [0.5], [0], reduce="median"), "'sum', 'max' or 'mean'"),
    (lambda: selector.aggregate_detections([0.1], [0.5, 0.6], [0]), r"three \[K\] arrays, got shapes \(1,\), \(2,\)"),
    (lambda: selector.aggregate_detections([0.1], [0.5], [3], class_weights=[1, 1]), "ids < 2"),
    (lambda: selector.aggregate_detections([0.1], [0.5], [0], class_weights=[-1.0]), "weights >= 0"),
    (lambda: selector.aggregate_detections([0.1], [0.5], [0], floor=math.nan), "floor"),
    (lambda: selector.aggregate_detections([np.nan], [0.5], [0]), "no NaN"),
    (lambda: selector.detection_score(np.zeros((1, 6))), "exactly one of maps=, values= or probabilities=, got neither"),
    (lambda: selector.detection_score(np.zeros((1, 6)), maps=[GRID], values=[1.0]), "got maps and values"),
    (lambda: selector.detection_score(np.zeros((1, 6)), values=[1.0]), "anchor_index: .* with values=, got None"),
    (lambda: selector.detection_score(np.zeros((1, 6)), probabilities=[0.5], anchor_index=[0]), "a pair"),
    (lambda: selector.anchor_inconsistency(np.zeros(3), np.zeros(4), [0]), r"equal shapes, got \(3,\) and \(4,\)"),
    (lambda: selector.anchor_inconsistency(np.zeros(3), np.zeros(3), [0], kind="categorical"), r"\[A, C\]"),
    (lambda: selector.anchor_inconsistency(np.zeros(3), np.zeros(3), [3]), r"indices in \[0, 3\)"),
    (lambda: selector.anchor_inconsistency(np.full(3, 2.0), np.zeros(3), [0]), "probabilities in \\[0, 1\\]"),
    (lambda: selector.detection_score(np.zeros((2, 6)), values=[1.0], anchor_index=[0]), "expected 2 indices"),
])
def test_detection_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- segmentation regions -------------------------------------------------------------------

SEG_VALUES = np.array([[0.2, 0.4], [0.6, 0.8]])
SEG_PRED = np.array([[0, 0], [1, 2]])


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"num_classes": 3}, (0.3 + 0.6 + 0.8) / 3),
    ({"num_classes": 4}, (0.3 + 0.6 + 0.8) / 4),  # class 3 not predicted: counts 0
    ({"num_classes": 3, "class_weights": [1.0, 1.0, 2.0]}, (0.3 + 0.6 + 1.6) / 4),
    ({"num_classes": 3, "class_weights": [0.0, 0.0, 5.0]}, 0.8),
    ({"num_classes": 3, "k": 1}, (0.4 + 0.6 + 0.8) / 3),  # top-1 pixel per class
    ({"num_classes": 3, "ignore_index": 2}, (0.3 + 0.6) / 3),
])
def test_region_score_known_values(kwargs, expected):
    assert selector.region_score(SEG_VALUES, SEG_PRED, **kwargs) == pytest.approx(expected)


def test_inverse_frequency_weights():
    np.testing.assert_allclose(selector.inverse_frequency_weights([3, 1]), [1 / 3, 2 / 3])  # (5/4, 5/2) normalised
    np.testing.assert_allclose(selector.inverse_frequency_weights([3, 1], power=0.0), [0.5, 0.5])
    w = selector.inverse_frequency_weights([1000, 10, 0])
    assert w[2] > w[1] > w[0] and w.sum() == pytest.approx(1.0)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 60), st.integers(1, 6), st.integers(0, 2**31 - 1), st.floats(0.1, 10.0), st.integers(1, 8))
def test_region_score_properties(n, c, seed, factor, k):
    rng = np.random.default_rng(seed)
    v, p, w = rng.random(n), rng.integers(0, c, n), rng.random(c) + 0.01
    score = selector.region_score(v, p, c, class_weights=w)
    assert 0.0 <= score <= 1.0
    perm = rng.permutation(n)
    assert selector.region_score(v[perm], p[perm], c, class_weights=w) == pytest.approx(score)
    assert selector.region_score(v, p, c, class_weights=w * factor) == pytest.approx(score)
    naive = sum(w[j] * v[p == j].mean() for j in range(c) if (p == j).any()) / w.sum()
    assert score == pytest.approx(naive)
    topk = selector.region_score(v, p, c, class_weights=w, k=k)
    assert topk >= score - 1e-12  # the top-k pixels of a class average at least its mean
    assert selector.region_score(v, p, c, class_weights=w, k=n) == pytest.approx(score)
    naive_k = sum(w[j] * np.sort(v[p == j])[::-1][:k].mean() for j in range(c) if (p == j).any()) / w.sum()
    assert topk == pytest.approx(naive_k)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: selector.region_score(SEG_VALUES, SEG_PRED, 0), "num_classes: expected an integer >= 1, got 0"),
    (lambda: selector.region_score(SEG_VALUES, SEG_PRED, 2), r"class ids in \[0, 2\), got \[0, 2\]"),
    (lambda: selector.region_score(SEG_VALUES, SEG_PRED[0], 3), r"equal shapes, got \(2, 2\) and \(2,\)"),
    (lambda: selector.region_score(SEG_VALUES, SEG_PRED * 1.0, 3), "integer class ids"),
    (lambda: selector.region_score(SEG_VALUES, SEG_PRED, 3, k=0), "k: expected an integer >= 1"),
    (lambda: selector.region_score(SEG_VALUES, SEG_PRED, 3, class_weights=[1, 1]), "expected 3 finite weights"),
    (lambda: selector.region_score(SEG_VALUES, SEG_PRED, 3, class_weights=[0, 0, 0]), "all zero"),
    (lambda: selector.region_score(SEG_VALUES * np.nan, SEG_PRED, 3), "without NaN"),
    (lambda: selector.inverse_frequency_weights([]), "non-empty"),
    (lambda: selector.inverse_frequency_weights([1, -1]), "counts >= 0"),
    (lambda: selector.inverse_frequency_weights([1], power=-1), "power"),
    (lambda: selector.inverse_frequency_weights([1], smoothing=0), "smoothing"),
])
def test_region_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- strata ---------------------------------------------------------------------------------


def test_stratum_normalize_known_values():
    scores = [1.0, 2.0, 3.0, 10.0, 10.0]
    strata = ["night", "night", "night", "day", "day"]
    z = math.sqrt(1.5)  # (3 - 2) / sqrt(2/3)
    np.testing.assert_allclose(selector.stratum_normalize(scores, strata), [-z, 0, z, 0, 0])
    np.testing.assert_allclose(selector.stratum_normalize(scores, strata, method="rank"), [0, 0.5, 1, 0.5, 0.5])
    np.testing.assert_allclose(selector.stratum_normalize([4.0], [1], method="rank"), [0.5])
    np.testing.assert_allclose(selector.stratum_normalize([1.0, 2.0, 2.0, 3.0], [0] * 4, method="rank"),
                               [0, 0.5, 0.5, 1])
    assert selector.stratum_normalize([], []).shape == (0,)


def test_strata_by_threshold():
    np.testing.assert_array_equal(selector.strata_by_threshold([0.1, 0.25, 0.7], [0.25]), [0, 1, 1])
    np.testing.assert_array_equal(selector.strata_by_threshold([0.1, 0.5, 0.9], [0.3, 0.6]), [0, 1, 2])


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 40), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_stratum_normalize_properties(n, s, seed):
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    strata = rng.integers(0, s, n)
    z = selector.stratum_normalize(scores, strata)
    r = selector.stratum_normalize(scores, strata, method="rank")
    assert np.all((r >= 0) & (r <= 1))
    # a positive affine map within each stratum (the night offset) changes neither
    offset, gain = rng.random(s) * 5, rng.random(s) + 0.5
    moved = scores * gain[strata] + offset[strata]
    np.testing.assert_allclose(selector.stratum_normalize(moved, strata), z, atol=1e-9)
    np.testing.assert_allclose(selector.stratum_normalize(moved, strata, method="rank"), r, atol=1e-12)
    # rank: any increasing map per stratum
    np.testing.assert_allclose(selector.stratum_normalize(scores ** 3, strata, method="rank"), r, atol=1e-12)
    # permutation equivariance
    perm = rng.permutation(n)
    np.testing.assert_allclose(selector.stratum_normalize(scores[perm], strata[perm]), z[perm], atol=1e-12)
    for code in np.unique(strata):
        members = z[strata == code]
        if members.size > 1 and scores[strata == code].std() > 1e-9:
            assert members.mean() == pytest.approx(0.0, abs=1e-9)
            assert members.std() == pytest.approx(1.0, abs=1e-9)


def test_streaming_normalizer_matches_numpy_and_restores():
    rng = np.random.default_rng(1)
    norm = selector.StratumNormalizer(warmup=3)
    history: dict[str, list[float]] = {"day": [], "night": []}
    for i in range(200):
        stratum = "night" if i % 3 else "day"
        x = float(rng.normal(0.8 if stratum == "night" else 0.2, 0.1))
        history[stratum].append(x)
        z = norm.update(stratum, x)
        seen = np.array(history[stratum])
        if seen.size < 3:
            assert z == 0.0  # warm-up
        else:
            assert z == pytest.approx((x - seen.mean()) / seen.std(), rel=1e-9, abs=1e-12)
    for stratum, seen in history.items():
        assert norm.count(stratum) == len(seen)
        assert norm.mean(stratum) == pytest.approx(np.mean(seen))
        assert norm.var(stratum) == pytest.approx(np.var(seen))
    restored = selector.StratumNormalizer.from_state(norm.state())
    assert restored.zscore("day", 0.5) == pytest.approx(norm.zscore("day", 0.5))
    assert restored.zscore("unseen", 0.5) == 0.0 and math.isnan(norm.mean("unseen"))
    # labels are keyed by str(): 0 and "0" are one stratum
    ints = selector.StratumNormalizer(warmup=1)
    ints.update(0, 1.0)
    ints.update("0", 3.0)
    assert ints.count(0) == 2 and ints.zscore(0, 3.0) == pytest.approx(1.0)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: selector.stratum_normalize([1.0, 2.0], [0]), r"expected 2 labels \(one per score\), got shape \(1,\)"),
    (lambda: selector.stratum_normalize([1.0], [0], method="minmax"), "'z' or 'rank'"),
    (lambda: selector.stratum_normalize([np.nan], [0]), "finite"),
    (lambda: selector.stratum_normalize([[1.0]], [0]), "1-D"),
    (lambda: selector.strata_by_threshold([0.1], [0.5, 0.2]), "strictly increasing"),
    (lambda: selector.strata_by_threshold([0.1], []), "one or more"),
    (lambda: selector.StratumNormalizer(warmup=0), "warmup: expected an integer >= 1, got 0"),
    (lambda: selector.StratumNormalizer().update("a", math.inf), "finite"),
    (lambda: selector.StratumNormalizer.from_state({"strata": {}}), "as written by StratumNormalizer.state"),
    (lambda: selector.StratumNormalizer.from_state({"warmup": 2, "strata": {"a": {"n": 0, "mean": 0, "m2": 0}}}),
     "as written by"),
])
def test_strata_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- variants by name -----------------------------------------------------------------------


def test_frame_score_names_every_variant():
    maps = [GRID, np.array([[1.0, 0.0], [0.0, 0.0]])]
    det = np.array([[0.0, 0.0, 0.5, 0.5, 0.9, 0], [0.6, 0.6, 0.61, 0.61, 0.8, 1]])
    params = selector.VariantParams(k=2, num_classes=3)
    assert selector.frame_score("paper", maps) == pytest.approx((7.5 + 0.25) / 2)
    assert selector.frame_score("paper", maps) == selector.scale_balanced_mean(maps, batched=False)
    assert selector.frame_score("topk", maps, params=params) == pytest.approx(14.5)
    assert selector.frame_score("topk_level", maps, params=params) == pytest.approx((14.5 + 0.5) / 2)
    assert selector.frame_score("detection_sum", maps, detections=det) == pytest.approx(1.75 + 5.0)
    assert selector.frame_score("detection_max", maps, detections=det) == pytest.approx(5.0)
    seg = [SEG_VALUES]
    assert selector.frame_score("region", seg, predicted=SEG_PRED, params=params) == pytest.approx(1.7 / 3)
    assert selector.frame_score("region_topk", seg, predicted=SEG_PRED,
                                params=selector.VariantParams(k=1, num_classes=3)) == pytest.approx(0.6)
    assert set(selector.VARIANTS) == {"paper", "topk", "topk_level", "detection_sum", "detection_max", "region",
                                      "region_topk"}


@pytest.mark.parametrize(("call", "message"), [
    (lambda: selector.frame_score("mean", [GRID]), "variant: expected one of paper, topk"),
    (lambda: selector.frame_score("detection_sum", [GRID]), "detections: variant 'detection_sum' expects"),
    (lambda: selector.frame_score("region", [GRID]), "predicted: variant 'region' expects"),
    (lambda: selector.frame_score("region", [GRID], predicted=np.zeros((4, 4), int)), "num_classes"),
    (lambda: selector.frame_score("region", [GRID, GRID], predicted=np.zeros((4, 4), int),
                                  params=selector.VariantParams(num_classes=2)), "one per-pixel map, got 2"),
    (lambda: selector.VariantParams(k=0), "k: expected an integer >= 1, got 0"),
    (lambda: selector.VariantParams(floor=math.inf), "floor"),
])
def test_frame_score_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
