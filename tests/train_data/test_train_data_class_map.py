"""Class maps by name: an MSRS-labelled set seen through another model's classes (issue 15 item 6)."""

from __future__ import annotations

import numpy as np
import pytest

from msmine.errors import UserError
from msmine.train.data import open_dataset
from msmine.train.data.class_map import class_lookup, map_classes, parse_class_map


def test_parse_inline_and_file(tmp_path):
    assert parse_class_map("person=pedestrian, car=vehicle") == {"person": "pedestrian", "car": "vehicle"}
    assert parse_class_map(None) == {} and parse_class_map("") == {}
    path = tmp_path / "map.yaml"
    path.write_text("person: pedestrian\n")
    assert parse_class_map(str(path)) == {"person": "pedestrian"}
    with pytest.raises(UserError, match="DATASET_CLASS=MODEL_CLASS"):
        parse_class_map("person")
    with pytest.raises(UserError, match="not found"):
        parse_class_map(str(tmp_path / "missing.yaml"))
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(UserError, match="mapping"):
        parse_class_map(str(tmp_path / "bad.yaml"))


def test_lookup_by_name_drop_and_errors():
    table = class_lookup(["person", "bicycle", "car"], ["Car", "pedestrian"], {"person": "pedestrian"})
    assert table.tolist() == [1, -1, 0]
    with pytest.raises(UserError, match="does not have"):
        class_lookup(["person"], ["person"], {"dog": "person"})
    with pytest.raises(UserError, match="model does not have"):
        class_lookup(["person"], ["car"], {"person": "pedestrian"})
    with pytest.raises(UserError, match="--class-map"):
        class_lookup(["person"], ["car"], {})


def test_msrs_seen_as_person_only(msrs_root):
    dataset = open_dataset(msrs_root, "test")
    subset = dataset.subset(range(40))
    mapped = map_classes(subset, ["person"])
    assert mapped.class_names == ["person"]
    kept = dropped = 0
    for i in range(len(subset)):
        before = subset.annotations(i, with_mask=False)
        after = mapped.annotations(i, with_mask=False)
        for branch, labels in before.labels.items():
            persons = labels == 0
            assert np.array_equal(after.boxes[branch], before.boxes[branch][persons])
            assert (after.labels[branch] == 0).all()
            kept += int(persons.sum())
            dropped += int((~persons).sum())
    assert kept > 0 and dropped > 0  # the slice has both people and other classes


def test_identity_when_classes_match(msrs_root):
    dataset = open_dataset(msrs_root, "test").subset(range(3))
    assert map_classes(dataset, list(dataset.class_names)) is dataset
