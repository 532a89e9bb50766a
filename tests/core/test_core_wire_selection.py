"""Schema 2 of the wire format: the selection a pair was kept on, beside the paper's score."""

from __future__ import annotations

import copy

import pytest

from msmine import wire
from tests.core.test_core_wire import make_manifest


def test_schema_2_carries_the_selection_beside_the_paper_score():
    m = make_manifest(score=0.379, selection={"policy": "entropy", "score": 0.239})
    assert m["schema"] == 2 and m["selection"] == {"policy": "entropy", "score": 0.239} and m["score"] == 0.379
    assert wire.parse_manifest(wire.canonical_json(m)) == m
    assert wire.selection_score(m) == 0.239 and wire.selection_of(m)["policy"] == "entropy"
    # the selection is part of the content hash: another policy score is another pair record
    other = make_manifest(score=0.379, selection={"policy": "entropy", "score": 0.5})
    assert other["upload_id"] != m["upload_id"]


def test_schema_1_is_still_accepted_and_selects_on_its_score():
    m = make_manifest(score=0.42)
    assert m["schema"] == 1 and "selection" not in m
    assert wire.parse_manifest(wire.canonical_json(m)) == m
    assert wire.selection_of(m) == {"policy": "inconsistency", "score": 0.42}


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda m: m.pop("selection"), "missing field"),
    (lambda m: m["selection"].update(score=float("nan")), "finite number"),
    (lambda m: m["selection"].update(score="0.3"), "finite number"),
    (lambda m: m["selection"].update(policy="Bad Policy!"), "selection.policy"),
    (lambda m: m["selection"].update(extra=1), "unknown field"),
    (lambda m: m.update(schema=3), "schema must be one of"),
    (lambda m: m.update(schema=True), "schema must be one of"),
])
def test_bad_selections_are_rejected(mutate, message):
    m = copy.deepcopy(make_manifest(selection={"policy": "random", "score": 0.7}))
    mutate(m)
    try:
        m["upload_id"] = wire.compute_upload_id(m)
    except ValueError:  # NaN cannot be hashed canonically; validation must still name it
        pass
    with pytest.raises(wire.WireError, match=message):
        wire.validate_manifest(m)


def test_schema_1_with_a_selection_field_is_rejected():
    m = copy.deepcopy(make_manifest(selection={"policy": "random", "score": 0.7}))
    m["schema"] = 1
    m["upload_id"] = wire.compute_upload_id(m)
    with pytest.raises(wire.WireError, match="unknown field"):
        wire.validate_manifest(m)
