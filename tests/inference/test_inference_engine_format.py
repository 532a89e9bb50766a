"""The framed engine file: round trip, and truncated or corrupt files refused with a clear error."""

from __future__ import annotations

import json

import pytest

from msmine.errors import UserError
from msmine.inference import (
    MAGIC,
    Profile,
    TensorRTRunner,
    frame_engine,
    profiles_from_header,
    read_engine,
    select_profile,
    unframe_engine,
    write_engine,
)

HEADER = {"metadata": {"msmine.task": "detect", "msmine.class_names": '["person"]'}, "profiles": [[1, 1, 1], [2, 8, 8]]}
PLAN = bytes(range(256)) * 10


def test_round_trip_through_a_file(tmp_path):
    path = write_engine(tmp_path / "sub" / "m.engine", PLAN, HEADER)
    assert path.read_bytes().startswith(MAGIC)
    header, plan = read_engine(path)
    assert plan == PLAN
    assert {k: header[k] for k in HEADER} == HEADER
    assert header["plan_bytes"] == len(PLAN) and len(header["plan_sha256"]) == 64
    assert not list(tmp_path.glob("sub/*.tmp"))  # written atomically
    assert unframe_engine(frame_engine(plan, header)) == (header, plan)  # re-framing keeps it


@pytest.mark.parametrize("cut", [3, len(MAGIC) + 2, len(MAGIC) + 10])
def test_truncated_in_the_header(cut):
    with pytest.raises(UserError, match="bad magic|truncated"):
        unframe_engine(frame_engine(PLAN, HEADER)[:cut])


def test_truncated_or_corrupt_plan_is_caught_by_its_length_and_checksum(tmp_path):
    data = frame_engine(PLAN, HEADER)
    with pytest.raises(UserError, match=r"truncated or corrupt \(plan of 2459 bytes, header says 2560\)"):
        unframe_engine(data[:-101], "m.engine")
    flipped = bytearray(data)
    flipped[-7] ^= 0xFF
    with pytest.raises(UserError, match="m.engine is corrupt .*sha256"):
        unframe_engine(bytes(flipped), "m.engine")
    path = tmp_path / "cut.engine"
    path.write_bytes(data[:-1])
    with pytest.raises(UserError, match="cut.engine is truncated"):
        TensorRTRunner(path)  # refused when read, before TensorRT (or a GPU) is involved


def test_other_corruptions():
    with pytest.raises(UserError, match="bad magic"):
        unframe_engine(PLAN)
    with pytest.raises(UserError, match="no engine plan"):
        unframe_engine(frame_engine(b"", HEADER))
    blob = b"[1, 2]"
    with pytest.raises(UserError, match="not a JSON object"):
        unframe_engine(MAGIC + len(blob).to_bytes(4, "little") + blob + PLAN)
    blob = b"{not json"
    with pytest.raises(UserError, match="not JSON"):
        unframe_engine(MAGIC + len(blob).to_bytes(4, "little") + blob + PLAN)
    with pytest.raises(UserError, match="'metadata' must be"):
        unframe_engine(frame_engine(PLAN, {"metadata": {"msmine.levels": 3}}))


def test_a_header_without_plan_facts_still_reads():
    """Engines framed before the header recorded the plan's length and sha256."""
    blob = json.dumps(HEADER).encode()
    assert unframe_engine(MAGIC + len(blob).to_bytes(4, "little") + blob + PLAN) == (HEADER, PLAN)


def test_missing_engine_file(tmp_path):
    with pytest.raises(UserError, match="engine file not found"):
        read_engine(tmp_path / "nope.engine")


def test_profiles_from_the_header():
    assert profiles_from_header(HEADER) == [Profile(1, 1, 1), Profile(2, 8, 8)]
    assert profiles_from_header({}) == [Profile(1, 1, 1)]
    for bad in ([], [[0, 1, 1]], [[4, 2, 8]], [["x"]], "1,8"):
        with pytest.raises(UserError, match="profiles"):
            profiles_from_header({"profiles": bad}, "m.engine")


@pytest.mark.parametrize("batch, index", [(1, 0), (2, 1), (5, 1), (8, 1), (9, 2), (32, 2)])
def test_select_profile(batch, index):
    assert select_profile([Profile(1, 1, 1), Profile(2, 8, 8), Profile(9, 32, 32)], batch) == index


def test_select_profile_errors():
    with pytest.raises(UserError, match=r"batch 9 exceeds the engine's largest profile \(8\)"):
        select_profile([Profile(1, 1, 1), Profile(2, 8, 8)], 9)
    with pytest.raises(UserError, match="covered by no profile"):
        select_profile([Profile(2, 8, 8)], 1)


def test_runner_reads_the_header_without_a_gpu(tmp_path):
    path = write_engine(tmp_path / "m.engine", b"PLAN", HEADER)
    runner = TensorRTRunner(path)
    assert runner.metadata["msmine.task"] == "detect"
    assert runner.profiles[-1] == Profile(2, 8, 8) and runner.max_batch == 8
    with pytest.raises(RuntimeError, match="activate"):
        runner.infer({})
