"""msmine.layout: the one classes.txt parser, used by training and the server's label import."""

from __future__ import annotations

import pytest

from msmine.errors import UserError
from msmine.layout import parse_class_names, read_class_names, write_class_names


def test_both_forms_and_round_trip(tmp_path):
    assert parse_class_names("0 person\n1 bicycle\n\n2 car\n") == ["person", "bicycle", "car"]
    assert parse_class_names("\ufeffperson\r\ncar") == ["person", "car"]
    write_class_names(tmp_path / "x" / "classes.txt", ["a b", "c"])
    assert read_class_names(tmp_path / "x" / "classes.txt") == ["a b", "c"]


def test_bad_ids_and_empty_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="expected class id 1"):
        parse_class_names("0 person\n2 car\n")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(UserError, match="empty"):
        read_class_names(tmp_path / "empty.txt")


def test_training_and_server_share_the_parser():
    from msmine.server import label_import
    from msmine.train.data import yolo

    assert label_import.parse_class_names is parse_class_names
    assert yolo.read_class_names is read_class_names
