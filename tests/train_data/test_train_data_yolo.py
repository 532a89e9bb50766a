"""YOLO label parsing: messy but valid files parse; malformed lines name the file and line."""

from __future__ import annotations

import numpy as np
import pytest

from msmine.errors import UserError
from msmine.train.data.yolo import (
    parse_yolo_text,
    read_class_names,
    read_yolo_labels,
    write_class_names,
    write_yolo_labels,
)

SIZE = (100, 200)  # (H, W)


@pytest.mark.parametrize(
    ("text", "boxes", "labels"),
    [
        ("", [], []),
        ("\n\n  \n", [], []),
        ("0 0.5 0.5 0.5 0.5", [[50, 25, 150, 75]], [0]),  # no trailing newline
        ("2  0.5  0.5  0.5  0.5  ", [[50, 25, 150, 75]], [2]),  # double spaces, trailing blank
        ("1\t0.25\t0.5\t0.1\t0.2\r\n", [[40, 40, 60, 60]], [1]),  # tabs, CRLF
        ("0 0.5 0.5 0.5 0.5\n\n1 0.25 0.5 0.1 0.2\n", [[50, 25, 150, 75], [40, 40, 60, 60]], [0, 1]),  # blank line
        ("0 0.95 0.5 0.2 0.2", [[170, 40, 200, 60]], [0]),  # crosses the right edge -> clipped
        ("0 -0.1 -0.1 0.4 0.4", [[0, 0, 20, 10]], [0]),  # out-of-range centre -> clipped
        ("0 0.5 0.5 0 0.2", [], []),  # zero width -> dropped
        ("0 1.5 0.5 0.2 0.2", [], []),  # entirely outside -> dropped
        ("0 0.5 0.5 -0.1 0.2", [], []),  # negative size -> dropped
        ("1.0 0.5 0.5 0.5 0.5", [[50, 25, 150, 75]], [1]),  # integral float class id
    ],
)
def test_parse_valid(text, boxes, labels):
    got_boxes, got_labels = parse_yolo_text(text, SIZE, num_classes=3)
    assert got_boxes.dtype == np.float32 and got_boxes.shape == (len(boxes), 4)
    assert got_labels.dtype == np.int64
    np.testing.assert_allclose(got_boxes, np.array(boxes, np.float32).reshape(-1, 4), atol=1e-4)
    assert got_labels.tolist() == labels


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("0 0.5 0.5 0.5", 1, "expected 5 fields"),
        ("0 0.5 0.5 0.5 0.5\n0 0.5 0.5 0.5 0.5 0.9", 2, "expected 5 fields"),
        ("\nperson 0.5 0.5 0.5 0.5", 2, "non-numeric"),
        ("0 0.5 abc 0.5 0.5", 1, "non-numeric"),
        ("0 nan 0.5 0.5 0.5", 1, "non-finite"),
        ("3 0.5 0.5 0.5 0.5", 1, "out of range"),
        ("-1 0.5 0.5 0.5 0.5", 1, "non-negative integer"),
        ("0.5 0.5 0.5 0.5 0.5", 1, "non-negative integer"),
    ],
)
def test_parse_malformed_names_file_and_line(text, line, fragment):
    with pytest.raises(UserError, match=fragment) as info:
        parse_yolo_text(text, SIZE, num_classes=3, source="labels/x.txt")
    assert f"labels/x.txt, line {line}" in str(info.value)


def test_missing_label_file_names_it(tmp_path):
    with pytest.raises(UserError, match="missing label file") as info:
        read_yolo_labels(tmp_path / "nope.txt", SIZE)
    assert str(tmp_path / "nope.txt") in str(info.value)


def test_binary_label_file_is_a_user_error(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(UserError, match="bad.txt"):
        read_yolo_labels(path, SIZE)


def test_write_then_read_roundtrip(tmp_path):
    boxes = np.array([[10.5, 20.25, 60, 90], [0, 0, 200, 100], [-5, 10, 30, 120], [50, 50, 50, 60]], np.float32)
    labels = np.array([2, 0, 1, 1])
    path = tmp_path / "deep" / "a.txt"
    write_yolo_labels(path, boxes, labels, SIZE)
    got_boxes, got_labels = read_yolo_labels(path, SIZE, num_classes=3)
    # the last box has zero width and is skipped; the third is clipped to the image
    expected = np.array([[10.5, 20.25, 60, 90], [0, 0, 200, 100], [0, 10, 30, 100]], np.float32)
    np.testing.assert_allclose(got_boxes, expected, atol=1e-3)
    assert got_labels.tolist() == [2, 0, 1]
    assert path.read_text().endswith("\n")


def test_write_empty_gives_empty_file(tmp_path):
    write_yolo_labels(tmp_path / "e.txt", np.zeros((0, 4)), np.zeros(0), SIZE)
    assert (tmp_path / "e.txt").read_text() == ""


def test_write_rejects_mismatched_lengths(tmp_path):
    with pytest.raises(ValueError, match="2 boxes but 1 labels"):
        write_yolo_labels(tmp_path / "x.txt", np.zeros((2, 4)), [0], SIZE)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("0 person\n1 bicycle\n2 car", ["person", "bicycle", "car"]),
        ("person\ntraffic light\n\n", ["person", "traffic light"]),
        ("0 unlabelled\n1 car_stop\n", ["unlabelled", "car_stop"]),
    ],
)
def test_class_names(tmp_path, text, names):
    path = tmp_path / "classes.txt"
    path.write_text(text)
    assert read_class_names(path) == names
    write_class_names(tmp_path / "out.txt", names)
    assert read_class_names(tmp_path / "out.txt") == names


def test_class_names_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(UserError, match="empty"):
        read_class_names(tmp_path / "empty.txt")
    (tmp_path / "gap.txt").write_text("0 a\n2 b\n")
    with pytest.raises(UserError, match="gap.txt, line 2"):
        read_class_names(tmp_path / "gap.txt")
    with pytest.raises(UserError, match="missing class list"):
        read_class_names(tmp_path / "none.txt")
