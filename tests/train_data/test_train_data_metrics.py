"""Metrics with hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from msmine.train.metrics import (
    coco_detection_metrics,
    iou_matrix,
    log_average_miss_rate,
    miou,
    segmentation_confusion,
    split_day_night,
)

NO_BOXES = np.zeros((0, 4))

# three images: one box, no box, two boxes of two classes
GTS = [
    (np.array([[0, 0, 10, 10]]), np.array([0])),
    (NO_BOXES, np.zeros(0)),
    (np.array([[5, 5, 25, 35], [40, 40, 60, 70]]), np.array([1, 0])),
]


def perfect(gts):
    return [(boxes, np.linspace(0.9, 0.5, len(boxes)), labels) for boxes, labels in gts]


def nothing(gts):
    return [(NO_BOXES, np.zeros(0), np.zeros(0)) for _ in gts]


def shifted(dx):
    return [(np.array([[dx, 0, 10 + dx, 10]]), np.array([0.9]), np.array([0]))]


ONE_GT = [(np.array([[0, 0, 10, 10]]), np.array([0]))]


@pytest.mark.parametrize(
    ("gts", "preds", "expected"),
    [
        (GTS, perfect(GTS), {"mAP": 1.0, "AP50": 1.0, "AP75": 1.0}),
        (GTS, nothing(GTS), {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0}),
        # shift 2.3 px: IoU = 7.7 / 12.3 = 0.626 -> matched at IoU 0.50, 0.55, 0.60 out of ten thresholds
        (ONE_GT, shifted(2.3), {"mAP": 0.3, "AP50": 1.0, "AP75": 0.0}),
        # shift 1 px: IoU = 9 / 11 = 0.818 -> matched up to 0.80: 7 of 10
        (ONE_GT, shifted(1.0), {"mAP": 0.7, "AP50": 1.0, "AP75": 1.0}),
        # shift 6 px: IoU = 4 / 16 = 0.25 -> never matched
        (ONE_GT, shifted(6.0), {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0}),
        # a right box with the wrong class counts for nothing
        (ONE_GT, [(np.array([[0, 0, 10, 10]]), np.array([0.9]), np.array([1]))], {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0}),
        # a higher-scored false positive on an image without ground truth: precision 1/2 at recall 1
        (
            [ONE_GT[0], (NO_BOXES, np.zeros(0))],
            [(np.array([[0, 0, 10, 10]]), np.array([0.5]), np.array([0])),
             (np.array([[0, 0, 10, 10]]), np.array([0.9]), np.array([0]))],
            {"mAP": 0.5, "AP50": 0.5, "AP75": 0.5},
        ),
    ],
)
def test_coco_metrics_table(gts, preds, expected):
    got = coco_detection_metrics(gts, preds, num_classes=2)
    assert set(got) == {"mAP", "AP50", "AP75"}
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=0.011), key


def test_coco_metrics_without_ground_truth_is_nan():
    got = coco_detection_metrics([(NO_BOXES, np.zeros(0))], [(NO_BOXES, np.zeros(0), np.zeros(0))], num_classes=3)
    assert all(math.isnan(v) for v in got.values())


def test_coco_metrics_print_nothing(capsys):
    coco_detection_metrics(GTS, perfect(GTS), num_classes=2)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("gts", "preds", "fragment"),
    [
        (GTS, perfect(GTS)[:2], "3 ground-truth images but 2"),
        (ONE_GT, [(np.array([[0, 0, 10]]), np.array([0.9]), np.array([0]))], "shape"),
        (ONE_GT, [(np.array([[0, 0, 10, 10]]), np.array([0.9, 0.1]), np.array([0]))], "one per box"),
        (ONE_GT, [(np.array([[0, 0, 10, 10]]), np.array([0.9]), np.array([5]))], "out of range"),
    ],
)
def test_coco_metrics_bad_inputs(gts, preds, fragment):
    with pytest.raises(ValueError, match=fragment):
        coco_detection_metrics(gts, preds, num_classes=2)


# -- log-average miss rate -------------------------------------------------------------------------
TWO_GT = [(np.array([[0, 0, 10, 10]]), np.array([0])), (np.array([[0, 0, 10, 10]]), np.array([0]))]


@pytest.mark.parametrize(
    ("gts", "preds", "expected"),
    [
        (TWO_GT, perfect(TWO_GT), 0.0),  # 1e-10 clamp, i.e. 0
        (TWO_GT, nothing(TWO_GT), 1.0),
        # one hit (0.9), one miss, a false positive scored below the hit: miss rate 0.5 at every FPPI
        (
            TWO_GT,
            [(np.array([[0, 0, 10, 10]]), np.array([0.9]), np.array([0])),
             (np.array([[50, 50, 60, 60]]), np.array([0.8]), np.array([0]))],
            0.5,
        ),
        # the false positive scored above the hit: FPPI jumps to 0.5 before the hit, so miss rate is 1 at
        # the 7 reference points below 0.5 and 0.5 at 10^-0.25 and 10^0: exp((7 ln 1 + 2 ln 0.5) / 9)
        (
            TWO_GT,
            [(np.array([[0, 0, 10, 10]]), np.array([0.9]), np.array([0])),
             (np.array([[50, 50, 60, 60]]), np.array([0.95]), np.array([0]))],
            0.5 ** (2 / 9),
        ),
        # a detection at IoU 0.4 is a false positive (scored above the hit); the other class is ignored
        (
            TWO_GT,
            [(np.array([[0, 0, 10, 10]]), np.array([0.9]), np.array([0])),
             (np.array([[0, 0, 4, 10], [0, 0, 10, 10]]), np.array([0.95, 0.99]), np.array([0, 1]))],
            0.5 ** (2 / 9),
        ),
    ],
)
def test_lamr_table(gts, preds, expected):
    assert log_average_miss_rate(gts, preds) == pytest.approx(expected, abs=1e-9)


def test_lamr_one_detection_matches_one_gt():
    gts = [(np.array([[0, 0, 10, 10], [1, 0, 11, 10]]), np.array([0, 0]))]
    preds = [(np.array([[0, 0, 10, 10], [0, 0, 10, 10]]), np.array([0.9, 0.8]), np.array([0, 0]))]
    assert log_average_miss_rate(gts, preds) == pytest.approx(0.0, abs=1e-9)
    preds = [(np.array([[0, 0, 10, 10]]), np.array([0.9]), np.array([0]))]
    assert log_average_miss_rate(gts, preds) == pytest.approx(0.5)


def test_lamr_without_ground_truth_is_nan():
    assert math.isnan(log_average_miss_rate([(NO_BOXES, np.zeros(0))], nothing([None])))


# -- segmentation ----------------------------------------------------------------------------------
def test_confusion_and_miou_hand_case():
    gt = np.array([[0, 0, 1, 1], [0, 2, 2, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 2, 0, 2]])
    conf = segmentation_confusion(pred, gt, num_classes=3)
    # rows gt, columns pred; the 255 pixel is not counted
    np.testing.assert_array_equal(conf, [[2, 1, 0], [0, 2, 0], [1, 0, 1]])
    result = miou(conf)
    # IoU0 = 2 / (3 + 3 - 2) = 0.5; IoU1 = 2 / (3 + 2 - 2) = 2/3; IoU2 = 1 / (2 + 1 - 1) = 0.5
    np.testing.assert_allclose(result["per_class"], [0.5, 2 / 3, 0.5])
    assert result["mIoU"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    ignored = miou(conf, ignore_index=0)
    # gt-0 pixels dropped: IoU1 = 2 / (2 + 2 - 2) = 1; IoU2 = 1 / (1 + 2 - 1) = 0.5
    assert math.isnan(ignored["per_class"][0])
    np.testing.assert_allclose(ignored["per_class"][1:], [1.0, 0.5])
    assert ignored["mIoU"] == pytest.approx(0.75)


def test_miou_absent_class_is_left_out():
    conf = segmentation_confusion(np.array([0, 0, 1]), np.array([0, 0, 1]), num_classes=4)
    result = miou(conf)
    assert result["mIoU"] == 1.0
    assert math.isnan(result["per_class"][2]) and math.isnan(result["per_class"][3])


def test_confusions_add_up():
    rng = np.random.default_rng(0)
    gts = rng.integers(0, 3, (4, 8, 8))
    preds = rng.integers(0, 3, (4, 8, 8))
    total = sum(segmentation_confusion(p, g, 3) for p, g in zip(preds, gts))
    np.testing.assert_array_equal(total, segmentation_confusion(preds, gts, 3))
    assert total.sum() == gts.size


def test_confusion_errors():
    with pytest.raises(ValueError, match="shape"):
        segmentation_confusion(np.zeros((2, 2)), np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="predicted class ids"):
        segmentation_confusion(np.full((2, 2), 5), np.zeros((2, 2)), 2)


# -- splits, geometry ------------------------------------------------------------------------------
def test_split_day_night():
    assert split_day_night([True, False, None, False]) == {"all": [0, 1, 2, 3], "day": [1, 3], "night": [0]}
    assert split_day_night([]) == {"all": [], "day": [], "night": []}


@pytest.mark.parametrize(
    ("a", "b", "iou"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),
    ],
)
def test_iou_matrix(a, b, iou):
    assert iou_matrix(np.array([a]), np.array([b]))[0, 0] == pytest.approx(iou)
