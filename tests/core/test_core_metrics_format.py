"""One flattening and one number format for metrics (msmine.metrics_format)."""

from __future__ import annotations

import math

from msmine.metrics_format import flatten_metrics, format_flat, format_metric, format_table, summary_line

NESTED = {
    "fused": {"all": {"AP50": 0.9461, "mAP": 0.5, "per_class_AP50": [0.9, math.nan]},
              "night": {"AP50": 0.25}},
    "thermal": {"all": {"AP50": 0.1}},
    "task": "detect",  # non-branch entries (evaluate's JSON) are skipped
}


def test_flatten_names_and_skips_non_scalars():
    assert flatten_metrics(NESTED) == {"fused_AP50": 0.9461, "fused_mAP": 0.5, "fused_night_AP50": 0.25,
                                       "thermal_AP50": 0.1}


def test_one_number_format_everywhere():
    assert format_metric(0.9461) == "0.946" and format_metric(0.95) == "0.950"
    assert format_metric(math.nan) == "nan" and format_metric(None) == "nan"
    assert format_flat({"b": 0.5, "a": 0.25}) == "a=0.250 b=0.500"
    assert summary_line(NESTED) == "fused_AP50=0.946 fused_mAP=0.500 thermal_AP50=0.100"


def test_table_has_per_class_columns_named_by_class():
    text = format_table(NESTED, ["person", "car"])
    lines = text.splitlines()
    assert lines[0].split() == ["branch", "split", "AP50", "mAP"]
    assert lines[1].split() == ["fused", "all", "0.946", "0.500"]
    assert "per-class AP50" in text
    header = lines[lines.index("per-class AP50") + 1].split()
    assert header == ["branch", "split", "person", "car"]
    assert lines[lines.index("per-class AP50") + 2].split() == ["fused", "all", "0.900", "nan"]
    seg = format_table({"fused": {"all": {"mIoU": 0.5, "per_class": [0.1, 0.9]}}}, ["road", "car"])
    assert "per-class IoU" in seg and seg.splitlines()[-1].split() == ["fused", "all", "0.100", "0.900"]
