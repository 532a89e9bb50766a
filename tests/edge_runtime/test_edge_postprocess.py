import numpy as np
import pytest

from msmine.edge_runtime.postprocess import heat_map, nms_detections


@pytest.mark.parametrize(
    ("cands", "expected_scores"),
    [
        ([], []),
        ([[0.1, 0.1, 0.3, 0.3, 0.9, 0], [0.11, 0.1, 0.3, 0.3, 0.8, 0]], [0.9]),  # same class, overlapping
        ([[0.1, 0.1, 0.3, 0.3, 0.9, 0], [0.11, 0.1, 0.3, 0.3, 0.8, 1]], [0.9, 0.8]),  # class-wise
        ([[0.1, 0.1, 0.3, 0.3, 0.9, 0], [0.6, 0.6, 0.8, 0.8, 0.1, 0]], [0.9]),  # below threshold
        ([[0.6, 0.6, 0.8, 0.8, 0.5, 2], [0.1, 0.1, 0.3, 0.3, 0.7, 0]], [0.7, 0.5]),  # best first
    ],
)
def test_nms_table(cands, expected_scores):
    got = nms_detections(np.array(cands, np.float32).reshape(-1, 6), 0.25, 0.5)
    assert [round(d["score"], 6) for d in got] == pytest.approx(expected_scores)


def test_nms_clips_and_orders_boxes_and_skips_nan():
    got = nms_detections(np.array([[1.2, 0.5, -0.1, 0.2, 0.9, 2], [np.nan, 0, 1, 1, 0.9, 0]], np.float32), 0.25, 0.5)
    assert len(got) == 1 and got[0]["class_id"] == 2 and got[0]["score"] == pytest.approx(0.9)
    assert got[0]["box"] == pytest.approx([0.0, 0.2, 1.0, 0.5])


def test_heat_map_is_a_colour_image_of_the_requested_size():
    maps = [np.zeros((6, 8), np.float32), np.ones((3, 4), np.float32)]
    img = heat_map(maps, (80, 60))
    assert img.shape == (60, 80, 3) and img.dtype == np.uint8
    cold = heat_map([np.zeros((3, 4), np.float32)], (8, 6))
    hot = heat_map([np.ones((3, 4), np.float32)], (8, 6))
    assert not np.array_equal(cold, hot)
