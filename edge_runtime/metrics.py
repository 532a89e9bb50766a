"""Prometheus metrics of one edge-runtime (its own registry; served with ``--metrics-port``).

Prometheus naming: counters end in ``_total`` and every labelled series exists at 0 from the start
(a dashboard sees "no drops yet", not "no data"); the camera state is one gauge with ``camera`` and
``state`` labels (1 for the current state, 0 for the others); no ``_created`` series.
docs/edge-dashboard.json is a Grafana dashboard built on these names.
"""

from __future__ import annotations

import logging

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from msmine.errors import UserError

log = logging.getLogger(__name__)

CAMERA_STATES = ["starting", "opened", "streaming", "lost", "reopening", "stalled", "ended"]
STAGES = ["pairing", "preprocess", "infer", "mining", "spool", "upload"]
LATENCY_BUCKETS = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
CAMERAS = ("visible", "thermal")
REFUSED_STATUSES = ("400", "401", "403", "409", "413", "422")

prometheus_client.disable_created_metrics()  # no "<counter>_created" series beside every counter


class EdgeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "msmine_edge_"
        self.frames = Counter(p + "frames", "frames captured", ["camera"], registry=r)
        self.pairs = Counter(p + "pairs", "pairs formed and run through the model", registry=r)
        self.pairs_per_second = Gauge(p + "pairs_per_second", "pairs per second over the last seconds", registry=r)
        self.unpaired = Counter(p + "unpaired_frames", "frames dropped without a partner", ["camera"], registry=r)
        self.dropped = Counter(p + "dropped_frames", "frames dropped because the pipeline was behind", ["camera"], registry=r)
        self.stage_seconds = Histogram(p + "stage_seconds", "latency per stage (per batch for infer)", ["stage"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.score = Histogram(p + "score", "selection score of each pair",
                               buckets=tuple(i / 20 for i in range(1, 21)) + (1.5,), registry=r)
        self.threshold = Gauge(p + "threshold", "current selection threshold", registry=r)
        self.kept = Counter(p + "kept", "pairs kept (durably spooled)", registry=r)
        self.uploaded = Counter(p + "uploaded", "pairs confirmed by the server", registry=r)
        self.upload_bytes = Counter(p + "upload_bytes", "bytes uploaded", registry=r)
        self.evicted = Gauge(p + "spool_evicted", "pairs evicted from (or refused by) the full spool", registry=r)
        self.disk_full = Gauge(p + "spool_disk_full", "1 while the spool's disk is full (spooling stopped)", registry=r)
        self.disk_full_skipped = Counter(p + "spool_disk_full_skipped", "pairs not spooled because the disk was full",
                                         registry=r)
        self.spool_refused = Gauge(p + "spool_refused_pairs", "pairs the server refused, set aside in the spool",
                                   registry=r)
        self.refused = Counter(p + "upload_refused", "uploads refused for good by the server", ["status"], registry=r)
        self.non_finite = Counter(p + "non_finite_scores", "pairs skipped because the model's score was NaN or inf",
                                  registry=r)
        self.spool_bytes = Gauge(p + "spool_bytes", "bytes in the spool", registry=r)
        self.spool_pairs = Gauge(p + "spool_pairs", "pairs waiting in the spool", registry=r)
        self.batch = Histogram(p + "batch_size", "micro-batch size", buckets=(1, 2, 4, 8, 16, 32), registry=r)
        self.model_updates = Counter(p + "model_updates", "models swapped in", registry=r)
        self.camera_state = Gauge(p + "camera_state", "1 for the camera's current state, 0 for the others",
                                  ["camera", "state"], registry=r)
        self._states: dict[str, str] = {}
        self.stage = {s: self.stage_seconds.labels(s) for s in STAGES}
        for cam in CAMERAS:  # every labelled series at 0 from the start
            self.frames.labels(cam)
            self.unpaired.labels(cam)
            self.dropped.labels(cam)
            for state in CAMERA_STATES:
                self.camera_state.labels(cam, state).set(0)
        self.dropped.labels("pair")
        for status in REFUSED_STATUSES:
            self.refused.labels(status)

    def set_camera_state(self, camera: str, state: str) -> None:
        previous = self._states.get(camera)
        if previous != state:
            self._states[camera] = state
            if previous is not None:
                self.camera_state.labels(camera, previous).set(0)
            self.camera_state.labels(camera, state).set(1)

    def camera_states(self) -> dict[str, str]:
        return dict(self._states)

    def serve(self, host: str, port: int) -> None:
        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise UserError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
        log.info("Prometheus metrics on http://%s:%d/metrics", host, port)
