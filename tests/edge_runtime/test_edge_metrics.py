"""Device metrics follow Prometheus conventions, and the Grafana dashboard uses only what exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest

from msmine.edge_runtime.metrics import EdgeMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "edge-dashboard.json"


def exposition(metrics: EdgeMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_labelled_series_exist_at_zero_and_no_created_series():
    body = exposition(EdgeMetrics())
    for line in ('msmine_edge_frames_total{camera="thermal"} 0.0', 'msmine_edge_dropped_frames_total{camera="pair"} 0.0',
                 'msmine_edge_unpaired_frames_total{camera="visible"} 0.0', "msmine_edge_non_finite_scores_total 0.0",
                 'msmine_edge_upload_refused_total{status="401"} 0.0', 'msmine_edge_camera_state{camera="visible",state="streaming"} 0.0'):
        assert line in body, line
    assert "_created" not in body


def test_camera_state_is_one_gauge_with_a_camera_label():
    m = EdgeMetrics()
    m.set_camera_state("thermal", "streaming")
    m.set_camera_state("thermal", "lost")
    body = exposition(m)
    assert 'msmine_edge_camera_state{camera="thermal",state="lost"} 1.0' in body
    assert 'msmine_edge_camera_state{camera="thermal",state="streaming"} 0.0' in body
    assert "msmine_edge_camera_thermal_state" not in body


def test_the_dashboard_uses_only_exported_metrics():
    dash = json.loads(DASHBOARD.read_text())
    names = {line.split("{")[0].split(" ")[0] for line in exposition(EdgeMetrics()).splitlines()
             if line and not line.startswith("#")}
    used = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            used.update(re.findall(r"\bmsmine_edge_[a-z_]+", target["expr"]))
    assert used and used <= names, used - names
    assert len(dash["panels"]) >= 10
