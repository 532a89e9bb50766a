import math

import pytest

from msmine.edge_runtime.cameras import parse_cameras
from msmine.edge_runtime.config import EdgeConfig, check_config, parse_budget, parse_location, parse_size
from msmine.errors import UserError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/hour", (100, 3600.0)),
        ("5/min", (5, 60.0)),
        ("2/s", (2, 1.0)),
        ("1000/day", (1000, 86400.0)),
        (" 7 / h ", (7, 3600.0)),
        ("3/run", (3, math.inf)),
        ("0/hour", (0, 3600.0)),
    ],
)
def test_parse_budget_accepts_rates(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["100", "100/week", "-1/hour", "1.5/hour", "abc", "/hour", "100 per hour"])
def test_parse_budget_rejects_bad_values_with_one_clear_line(text):
    with pytest.raises(UserError, match="bad --budget"):
        parse_budget(text)


@pytest.mark.parametrize(("text", "expected"), [("2G", 2 << 30), ("512M", 512 << 20), ("10k", 10240), ("1234", 1234),
                                                ("1.5MiB", 3 << 19)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-5", "2X", "lots"])
def test_parse_size_rejects(text):
    with pytest.raises(UserError):
        parse_size(text)


def test_parse_location():
    assert parse_location("48.1,-1.6") == {"lat": 48.1, "lon": -1.6}
    assert parse_location("") is None
    for bad in ("91,0", "x,y", "1"):
        with pytest.raises(UserError, match="--location"):
            parse_location(bad)


def test_parse_cameras():
    assert parse_cameras("visible=a.mp4,thermal=rtsp://h/x?a=1,b=2") == {"visible": "a.mp4", "thermal": "rtsp://h/x?a=1,b=2"}
    assert parse_cameras("thermal=1, visible=0") == {"visible": "0", "thermal": "1"}
    for bad in ("visible=a.mp4", "visible=a,visible=b", "rgb=a,thermal=b", "", "visible=,thermal=b"):
        with pytest.raises(UserError, match="--cameras"):
            parse_cameras(bad)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("backend", "gpu", "backend"), ("score", "best", "score"), ("image_format", "bmp", "image_format"),
     ("device_id", "bad id!", "device-id"), ("max_batch", 0, "max-batch"), ("pair_tolerance_ms", -1.0, "pair_tolerance"),
     ("budget", "10", "budget")],
)
def test_check_config_rejects(field, value, message):
    cfg = EdgeConfig()
    setattr(cfg, field, value)
    with pytest.raises(UserError, match=message):
        check_config(cfg)


def test_defaults_are_valid():
    check_config(EdgeConfig())
