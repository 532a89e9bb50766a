"""The device pipeline: capture -> pair -> preprocess -> infer -> select -> spool -> upload.

Every stage is a thread joined to the next by a bounded queue, so capture, inference, selection
and upload overlap. Replays apply back-pressure (nothing is dropped); live cameras drop the oldest
frame when the pipeline is behind (counted). When frames queue in front of the model they are
micro-batched. A stop (signal, ``--duration``, end of file) flows down the queues as an end
marker: every captured pair is inferred, the selector is flushed, every kept pair is spooled
before the run ends, and the uploader gets ``drain_timeout_s`` to empty the spool.

``EdgePipeline(...)`` only wires objects together; every file, socket and network call happens in
:meth:`EdgePipeline.from_config` (spool, cameras, model) and :meth:`EdgePipeline.start` (the
budget carried over a restart, registration, detections output, the identity check against the
server, refused pairs re-queued, threads). A pair whose model score is not finite (NaN, inf) is
skipped and counted (``non_finite`` in the summary, a metric, one log line per run).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from msmine.edge_runtime.cameras import (
    CAMERAS,
    END,
    CaptureThread,
    FrameSource,
    Replay,
    ReplayClock,
    make_openers,
    open_at_start,
    parse_cameras,
)
from msmine.edge_runtime.config import (
    EdgeConfig,
    apply_threshold_file,
    check_config,
    default_device_id,
    default_spool_dir,
    parse_budget,
    parse_location,
    parse_night_hours,
    parse_size,
    score_spec,
)
from msmine.edge_runtime.metrics import EdgeMetrics
from msmine.edge_runtime.model_update import ModelFetcher, ModelUpdater, fetch_initial_model
from msmine.edge_runtime.outputs import NullSink, open_sink
from msmine.edge_runtime.packaging import Prepared, Result, detections, make_feeds, package, prepare
from msmine.edge_runtime.pairing import Pairer
from msmine.edge_runtime.postprocess import nms_detections
from msmine.edge_runtime.registration import load_warp
from msmine.edge_runtime.runners import ModelRunner, load_runner
from msmine.edge_runtime.spool import Spool
from msmine.edge_runtime.uploader import Uploader, check_identity
from msmine.errors import UserError
from msmine.model_contract import VARIANT_KEY, VARIANT_SCORE, branch_output
from msmine.selector import StreamConfig, StreamingSelector, VariantParams, combined, frame_score

log = logging.getLogger(__name__)

Opener = Callable[[], FrameSource]
STOP_GRACE_S = 3.0  # after a stop, how long a camera may take to end its stream


def make_stream_config(cfg: EdgeConfig, stills: bool = False) -> StreamConfig:
    """The selector's settings; ``stills`` (unrelated images): no temporal suppression."""
    budget, window = parse_budget(cfg.budget)
    normalize = cfg.normalize_strata != "off"
    sampling = "top" if math.isinf(cfg.sampling_beta) else "softmax" if normalize else "power"
    try:
        return StreamConfig(
            budget=budget, window_s=window, decision_delay_s=cfg.decision_delay_s,
            suppression_gap_s=0.0 if stills else cfg.suppression_gap_s, buffer_size=cfg.buffer_size,
            adaptive_threshold=cfg.adaptive_threshold, target_rate_factor=cfg.target_rate_factor,
            initial_threshold=cfg.threshold, sampling=sampling,
            sampling_beta=0.0 if sampling == "top" else cfg.sampling_beta, seed=cfg.seed,
            normalize_strata=normalize,
        )
    except ValueError as exc:
        raise UserError(f"bad selection setting: {exc}") from None


class ScorePolicy:
    """The selection score of a pair: the model's inconsistency (under a score variant), entropy,
    both, or a seeded random draw; ``name`` is what manifests record (``inconsistency.topk``).

    The ``paper`` variant is the graph's ``inconsistency`` output. Another variant is the graph's
    ``score_variant`` output when the model was exported with that variant and ``k`` (metadata
    ``msmine.score_variant``), else it is computed here from the graph's maps with
    ``selector.frame_score`` (the detection variants read the fused detections after the device's
    NMS, in model-input coordinates like the maps)."""

    def __init__(self, name: str, weight: float = 0.5, seed: int = 0, variant: str = "paper",
                 params: VariantParams | None = None, nms_iou: float = 0.5, class_weights: str = "") -> None:
        self.strategy = name.partition(".")[0]
        self.variant = variant
        self.name = self.strategy if variant == "paper" else f"{self.strategy}.{variant}"
        self.weight = weight
        self.params = params or VariantParams()
        self.nms_iou = nms_iou
        self._rng = np.random.default_rng(seed)
        # the metadata value of a graph exported with this variant and k (compared on every frame);
        # the graph computes unweighted scores, so with class weights the device computes them here
        self.class_weights = class_weights.strip()
        self._graph_key = None if self.class_weights else json.dumps({"name": self.variant, "k": self.params.k})
        self._weights_for: dict[tuple[str, ...], VariantParams] = {}

    def params_for(self, class_names) -> VariantParams:
        """The variant's parameters with ``--class-weights`` resolved against this model's classes
        (a one-line UserError for a class the model does not have, or a wrong count)."""
        if not self.class_weights:
            return self.params
        key = tuple(str(n) for n in class_names)
        if key not in self._weights_for:
            from msmine.strategies import parse_class_weights

            weights = parse_class_weights(self.class_weights, key, allow_inverse=False)
            self._weights_for[key] = dataclasses.replace(self.params, class_weights=weights)
        return self._weights_for[key]

    def variant_score(self, result: Result) -> float:
        if self.variant == "paper":
            return result.inconsistency
        model, out = result.model, result.outputs
        if VARIANT_SCORE in out and model.metadata.get(VARIANT_KEY) == self._graph_key:
            return float(out[VARIANT_SCORE])
        maps = [np.asarray(out[name]) for name in model.map_names]
        base = self.params_for(model.class_names)
        if model.task == "segment":
            params = dataclasses.replace(base, num_classes=len(model.class_names))
            predicted = np.asarray(out[branch_output("fused", "segment")])
            return frame_score(self.variant, maps, predicted=predicted, params=params)
        cand = np.asarray(out[branch_output("fused", "detect")], dtype=np.float64).reshape(-1, 6)
        dets = nms_detections(cand, min(base.floor, 1.0), self.nms_iou)
        rows = np.array([[*d["box"], d["score"], d["class_id"]] for d in dets
                         if d["class_id"] < len(model.class_names)], dtype=np.float64).reshape(-1, 6)
        return frame_score(self.variant, maps, detections=rows, params=base)

    def __call__(self, result: Result) -> float:
        if self.strategy == "inconsistency":
            return self.variant_score(result)
        if self.strategy == "entropy":
            return result.entropy
        if self.strategy == "combined":
            if self.variant != "paper":
                return float(self.variant_score(result) + self.weight * np.clip(result.entropy, 0, 1))
            return float(combined(np.clip(result.inconsistency, 0, 1), np.clip(result.entropy, 0, 1), self.weight))
        return float(self._rng.random())


def stratum_of(result: Result, cfg: EdgeConfig) -> str | None:
    """Day or night from what the device knows: the visible image's illumination (mean luminance
    of every 8th pixel) or the local hour of its capture time (``--night-hours``); None when off."""
    if cfg.normalize_strata == "off":
        return None
    if cfg.normalize_strata == "time":
        start, end = parse_night_hours(cfg.night_hours)
        hour = time.localtime(result.prepared.pair.visible.wall).tm_hour
        night = (start <= hour or hour < end) if start > end else start <= hour < end
        return "night" if night else "day"
    v = result.prepared.visible[::8, ::8]
    lum = float((v[..., 0] * 0.114 + v[..., 1] * 0.587 + v[..., 2] * 0.299).mean()) / 255.0 if v.ndim == 3 \
        else float(v.mean()) / 255.0
    return "night" if lum < cfg.night_luminance else "day"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class EdgePipeline:
    """One run of the device. Build with :meth:`from_config`; ``run()`` blocks until it stops."""

    def __init__(self, cfg: EdgeConfig, runner: ModelRunner, sources: dict[str, tuple[FrameSource, Opener]],
                 spool: Spool, metrics: EdgeMetrics | None = None, fetcher: ModelFetcher | None = None,
                 replay: Replay | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics or EdgeMetrics()
        self.spool = spool
        self.device_id = cfg.device_id or default_device_id()
        self.location = parse_location(cfg.location)
        spec = score_spec(cfg)
        self.policy = ScorePolicy(spec.strategy.name, cfg.combined_weight, cfg.seed, spec.variant,
                                  VariantParams(k=cfg.variant_k, floor=cfg.variant_floor), cfg.nms_iou,
                                  class_weights=cfg.class_weights)
        self.policy.params_for(runner.info.class_names)  # a bad --class-weights fails now, in one line
        self.replay = replay or Replay("live" if any(src.live for src, _ in sources.values()) else "video")
        self.selector = StreamingSelector(make_stream_config(cfg, stills=self.replay.mode == "stills"))
        self.warp = None  # loaded by start()
        self.sink = NullSink()  # opened by start()
        self._runner = runner
        self._next_runner: ModelRunner | None = None
        self._runner_lock = threading.Lock()
        self.input_size = runner.info.input_size
        self.live = any(src.live for src, _ in sources.values())
        if self.live and not all(src.live for src, _ in sources.values()):
            raise UserError("--cameras: mix of a live camera and a replay; both must be live or both files/folders")
        self._capture_stop = threading.Event()
        self._done = threading.Event()
        self._stop_requested = threading.Event()
        self.clock = ReplayClock()
        self._cam_q = {cam: queue.Queue(maxsize=8) for cam in CAMERAS}
        self._infer_q: queue.Queue = queue.Queue(maxsize=2 * cfg.max_batch)
        self._mine_q: queue.Queue = queue.Queue(maxsize=4)
        self._spool_q: queue.Queue = queue.Queue(maxsize=16)
        self.captures = {
            cam: CaptureThread(cam, src, opener, self._cam_q[cam], self._capture_stop, self.clock, cfg.realtime,
                               cfg.reopen_backoff_s, on_state=self.metrics.set_camera_state,
                               on_drop=self._count_drop)
            for cam, (src, opener) in sources.items()
        }
        for cam in CAMERAS:
            self.metrics.set_camera_state(cam, "starting")
        self.pairer = Pairer(cfg.pair_tolerance_ms / 1000.0)
        self.uploader: Uploader | None = None  # made by start() once the device's identity is known
        self.identity: dict = {}  # what the server said about the token (start())
        self.requeued = 0
        self.updater = ModelUpdater(fetcher, runner.info.sha256, self.install_model, cfg.model_poll_s,
                                    cfg.backend, cfg.threads, cfg.ort_spin) if fetcher and cfg.model_poll_s > 0 else None
        self._count_lock = threading.Lock()
        self.counts = {"pairs": 0, "kept": 0, "dropped": 0, "batches": 0, "model_swaps": 0, "non_finite": 0,
                       "disk_full_skipped": 0, "spool_errors": 0}
        self._seconds = {"mining": 0.0, "infer": 0.0}
        self.spooled_at_start = 0
        self._threads: list[threading.Thread] = []
        self.error: Exception | None = None
        self._stop_seen: float | None = None
        self._pending: dict[int, Result] = {}
        self.started = 0.0
        self.stopped = 0.0
        self.rss = {"start": 0, "end": 0}

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg: EdgeConfig, openers: dict[str, Opener] | None = None) -> EdgePipeline:
        """Validate everything a user can get wrong before anything starts; one clear error if not."""
        check_config(cfg)
        cfg = apply_threshold_file(cfg)
        if not cfg.spool_dir:
            cfg = dataclasses.replace(cfg, spool_dir=str(default_spool_dir()))
        spool = Spool(cfg.spool_dir, parse_size(cfg.spool_max_bytes))
        replay = None
        if openers is None:
            specs = parse_cameras(cfg.cameras)
            openers, replay = make_openers(specs)
        else:
            specs = {cam: f"<{cam} source>" for cam in CAMERAS}
        fetcher = None
        if cfg.server:
            fetcher = ModelFetcher(cfg.server, cfg.token, cfg.model_dir or Path(cfg.spool_dir) / "models")
        model_path = cfg.model
        if not model_path:
            if fetcher is None:
                raise UserError("no --model given (and no --server to fetch one from)")
            model_path = str(fetch_initial_model(fetcher))
        runner = load_runner(model_path, cfg.backend, cfg.threads, spin=cfg.ort_spin)
        sources = {cam: (open_at_start(cam, openers[cam], specs[cam]), openers[cam]) for cam in CAMERAS}
        return cls(cfg, runner, sources, spool, fetcher=fetcher, replay=replay)

    def _carry_budget_over_restart(self) -> None:
        """A restart must not refill the budget: pairs kept within the last window still count."""
        budget, window = parse_budget(self.cfg.budget)
        if math.isinf(window):
            return  # N/run: a budget per run
        recent = self.spool.kept_since(time.time() - window)
        if recent:
            left = self.selector.consume(recent)
            log.info("budget: %d pair(s) kept in the last %s before this start; %.0f upload(s) left now",
                     recent, self.cfg.budget.split("/")[1], left)

    # -- control -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        if not self._stop_requested.is_set():
            log.info("stopping: finishing the pairs in flight")
        self._stop_requested.set()
        self._capture_stop.set()

    def install_model(self, runner: ModelRunner) -> None:
        """Swap in a new model at the next batch boundary (called by the model updater); a UserError
        when the device's settings do not fit it (its classes and ``--class-weights``)."""
        self.policy.params_for(runner.info.class_names)
        with self._runner_lock:
            self._next_runner = runner

    def _count(self, key: str, n: int = 1) -> None:
        """Every counter of the run goes through one lock (stages run in their own threads)."""
        with self._count_lock:
            self.counts[key] += n

    def _add_seconds(self, key: str, dt: float) -> None:
        with self._count_lock:
            self._seconds[key] += dt

    def count(self, key: str) -> int:
        with self._count_lock:
            return self.counts[key]

    def _count_drop(self, camera: str) -> None:
        self._count("dropped")  # called from the capture threads and the pairing thread
        self.metrics.dropped.labels(camera).inc()

    def _count_refused(self, status: int) -> None:
        self.metrics.refused.labels(str(status)).inc()

    def _count_upload(self, item, seconds: float) -> None:
        self.metrics.uploaded.inc()
        self.metrics.upload_bytes.inc(item.bytes)
        self.metrics.stage["upload"].observe(seconds)

    def _check_identity(self) -> None:
        """Ask the server whose token this is: adopt its device id, or refuse a --device-id that disagrees."""
        ident = check_identity(self.cfg.server, self.cfg.token, self.cfg.device_id, timeout_s=5.0)
        self.identity = ident
        if ident.get("device_id") and not self.cfg.device_id:
            self.device_id = ident["device_id"]
            log.info("device id %s (from the token)", self.device_id)

    def _requeue_refused(self) -> None:
        """Refused pairs go back in the queue on --resend-refused, or when the identity changed since."""
        key = self.uploader.key if self.uploader else None
        if not self.spool.count("refused"):
            return
        if self.cfg.resend_refused:
            self.requeued = self.spool.requeue_refused(self.device_id)
            log.info("re-sending %d refused pair(s) (--resend-refused)", self.requeued)
        else:
            self.requeued = self.spool.requeue_refused(self.device_id, unless_key=key)
            if self.requeued:
                log.info("re-sending %d pair(s) refused under another token, device id or server", self.requeued)
        left = self.spool.count("refused")
        if left:
            reasons = sorted({r for _, r in self.spool.refused()})
            log.warning("%d pair(s) in the spool were refused by the server (%s); fix it and run with "
                        "--resend-refused", left, "; ".join(reasons[:3]))

    def start(self) -> None:
        """All the run's I/O before its threads: budget carry-over, registration, outputs, identity, threads."""
        self._carry_budget_over_restart()
        self.warp = load_warp(self.cfg.registration)
        self.sink = open_sink(self.cfg.detections)
        if self.cfg.server:
            self._check_identity()
            cfg = self.cfg
            self.uploader = Uploader(
                self.spool, cfg.server, cfg.token, kbps=cfg.upload_kbps, timeout_s=cfg.upload_timeout_s,
                backoff_max_s=cfg.backoff_max_s, seed=cfg.seed, device_id=self.device_id,
                on_uploaded=self._count_upload, on_refused=self._count_refused,
            )
            self._requeue_refused()
        self.spooled_at_start = self.spool.count()
        if self.replay.mode == "stills":
            log.info("selection on stills: no temporal suppression (the images are unrelated)")
        self.started = time.monotonic()
        self.rss["start"] = _rss_bytes()
        stages = [("pairing", self._pair_loop, None), ("inference", self._infer_loop, self._infer_q),
                  ("mining", self._mine_loop, self._mine_q), ("spool", self._spool_loop, self._spool_q)]
        self._threads = [threading.Thread(target=self._stage, args=(fn, q, name == "spool"), name=name, daemon=True)
                         for name, fn, q in stages]
        for t in self._threads:
            t.start()
        for cap in self.captures.values():
            cap.start()
        if self.uploader:
            self.uploader.start()
        if self.updater:
            self.updater.start()
        if self.cfg.metrics_port:
            self.metrics.serve(self.cfg.metrics_host, self.cfg.metrics_port)

    def run(self, duration_s: float = 0.0) -> dict:
        """Start, supervise until stopped (duration, end of file, request_stop), finish; the summary."""
        self.start()
        deadline = self.started + duration_s if duration_s > 0 else math.inf
        last_pairs, last_t = 0, time.monotonic()
        while not self._done.wait(0.2):
            now = time.monotonic()
            if now >= deadline:
                self.request_stop()
            if self.live and not self._capture_stop.is_set():
                for cap in self.captures.values():
                    if cap.stalled(now, self.cfg.stall_timeout_s):
                        cap.restart()
            if now - last_t >= 1.0:
                pairs = self.count("pairs")
                self.metrics.pairs_per_second.set((pairs - last_pairs) / (now - last_t))
                last_pairs, last_t = pairs, now
                self._update_spool_metrics()
        return self.finish()

    def _update_spool_metrics(self) -> None:
        self.metrics.spool_bytes.set(self.spool.total_bytes())
        self.metrics.spool_pairs.set(self.spool.count())
        self.metrics.spool_refused.set(self.spool.count("refused"))
        self.metrics.evicted.set(self.spool.evicted)
        self.metrics.disk_full.set(1 if self.spool.disk_full else 0)

    def finish(self) -> dict:
        for t in self._threads:
            t.join()
        self.stopped = time.monotonic()
        self.rss["end"] = _rss_bytes()
        if self.updater:
            self.updater.stop()
        if self.uploader:
            if self.spool.count() and self.cfg.drain_timeout_s > 0:
                log.info("uploading the spool (up to %.0f s)", self.cfg.drain_timeout_s)
                self.uploader.drain(self.cfg.drain_timeout_s)
            self.uploader.stop()
            self.uploader.join(timeout=self.cfg.upload_timeout_s + 1)
        self.sink.close()
        self._update_spool_metrics()
        summary = self.summary()
        self.spool.close()
        log.info("summary: %s", json.dumps(summary))
        self._warn_if_nothing_uploaded(summary)
        if self.error is not None:
            raise RuntimeError("a pipeline stage failed (see the log above)") from self.error
        return summary

    def _warn_if_nothing_uploaded(self, summary: dict) -> None:
        """A run that should have uploaded and uploaded nothing says so loudly (the CLI also exits non-zero)."""
        up = summary["upload"]
        if not self.cfg.server or summary["uploaded"] or not (self.spooled_at_start or summary["kept"] or up["refused"]):
            return
        why = (f"the server refused {up['refused']} pair(s): {'; '.join(up['refused_reasons'])}" if up["refused"]
               else "the server was not reachable" if self.uploader and self.uploader.server_up is False
               else f"drain time ({self.cfg.drain_timeout_s:g} s) ran out")
        log.error("NOTHING UPLOADED in this run although %d pair(s) were waiting: %s; %d pair(s) stay spooled, "
                  "%d set aside as refused", self.spooled_at_start + summary["kept"], why, summary["spooled"],
                  summary["refused"])

    def summary(self) -> dict:
        elapsed = max((self.stopped or time.monotonic()) - self.started, 1e-9)
        with self._count_lock:
            counts = dict(self.counts)
            seconds = dict(self._seconds)
        pairs = counts["pairs"]
        up = self.uploader
        refusals = dict(up.refusals) if up else {}
        return {
            "elapsed_s": round(elapsed, 3),
            "frames": {cam: cap.index for cam, cap in self.captures.items()},
            "pairs": pairs,
            "pairs_per_s": round(pairs / elapsed, 2),
            "unpaired": dict(self.pairer.unpaired),
            "dropped": counts["dropped"],
            "non_finite": counts["non_finite"],
            "kept": counts["kept"],
            "evicted": self.spool.evicted,
            "disk_full_skipped": self.spool.disk_full_skipped,
            "spool_index_rebuilt": self.spool.rebuilt,
            "uploaded": up.uploaded if up else 0,
            "spooled": self.spool.count(),
            "refused": self.spool.count("refused"),
            "upload": {
                "spooled_at_start": self.spooled_at_start,
                "duplicates": up.duplicates if up else 0,
                "refused": sum(refusals.values()),
                "refused_by_status": {str(k): v for k, v in sorted(refusals.items())},
                "refused_reasons": sorted({r for _, r in self.spool.refused()})[:5],
                "requeued": self.requeued,
                "delete_failures": up.delete_failures if up else 0,
                "device_id": self.device_id,
            },
            "sources": self.replay.summary(),
            "camera_reopens": {cam: cap.reopens for cam, cap in self.captures.items()},
            "selector": dict(self.selector.stats),
            "threshold": round(self.selector.threshold, 6),
            "mining_us_per_pair": round(1e6 * seconds["mining"] / max(pairs, 1), 2),
            "infer_ms_per_pair": round(1e3 * seconds["infer"] / max(pairs, 1), 3),
            "batches": counts["batches"],
            "model": {"version": self._runner.info.version, "sha256": self._runner.info.sha256,
                      "runner": self._runner.name, "swaps": counts["model_swaps"]},
            "rss_bytes": dict(self.rss),
        }

    # -- stages --------------------------------------------------------------------------------

    def _stage(self, loop: Callable[[], None], inbox: queue.Queue | None, last: bool) -> None:
        """Run one stage; a bug stops the run cleanly (the rest still drains) and is re-raised at the end.

        ``last``: the final stage, whose end is the end of the run."""
        try:
            loop()
        except Exception as exc:
            log.exception("%s stage failed; stopping", threading.current_thread().name)
            self.error = exc
            self.request_stop()
            while inbox is not None and inbox.get() is not END:
                pass
        finally:
            if last:
                self._done.set()

    def _pair_loop(self) -> None:
        ended: set[str] = set()
        last_t = dict.fromkeys(CAMERAS, -math.inf)
        try:
            while len(ended) < len(CAMERAS):
                open_cams = [c for c in CAMERAS if c not in ended]
                lagging = min(open_cams, key=lambda c: last_t[c])
                try:
                    item = self._cam_q[lagging].get(timeout=0.05)
                    cam = lagging
                except queue.Empty:
                    if self._abandon_blocked_cameras(open_cams):
                        for cam in open_cams:
                            ended.add(cam)
                            self._emit(self.pairer.end(cam))
                        continue
                    if not self.live:
                        continue  # a replay's lagging file is just slow: wait for it (nothing dropped)
                    other = [c for c in open_cams if c != lagging]
                    try:
                        cam = other[0]
                        item = self._cam_q[cam].get_nowait()
                    except (queue.Empty, IndexError):
                        self._emit(self.pairer.settle())
                        continue
                t0 = time.perf_counter()
                if item is END:
                    ended.add(cam)
                    self._capture_stop.set()  # one stream ended: the run ends (replays, or stop)
                    pairs = self.pairer.end(cam)
                else:
                    last_t[cam] = item.t
                    self.metrics.frames.labels(cam).inc()
                    before = dict(self.pairer.unpaired)
                    pairs = self.pairer.push(item)
                    for c in CAMERAS:
                        if self.pairer.unpaired[c] != before[c]:
                            self.metrics.unpaired.labels(c).inc(self.pairer.unpaired[c] - before[c])
                self.metrics.stage["pairing"].observe(time.perf_counter() - t0)
                self._emit(pairs)
        finally:
            self._infer_q.put(END)

    def _abandon_blocked_cameras(self, open_cams: list[str]) -> bool:
        """After a stop, a camera blocked in a read (a frozen stream) never ends: give up on it after a grace time."""
        if not self._capture_stop.is_set():
            return False
        if self._stop_seen is None:
            self._stop_seen = time.monotonic()
        if time.monotonic() - self._stop_seen < STOP_GRACE_S or any(not self._cam_q[c].empty() for c in open_cams):
            return False
        log.warning("camera(s) %s did not stop within %.0f s (blocked read); abandoning them", ", ".join(open_cams),
                    STOP_GRACE_S)
        return True

    def _emit(self, pairs) -> None:
        for pair in pairs:
            t0 = time.perf_counter()
            prepared = prepare(pair, self.input_size, self.warp)
            self.metrics.stage["preprocess"].observe(time.perf_counter() - t0)
            if self.live:
                while True:
                    try:
                        self._infer_q.put_nowait(prepared)
                        break
                    except queue.Full:
                        try:
                            self._infer_q.get_nowait()
                            self._count_drop("pair")
                        except queue.Empty:
                            pass
            else:
                self._infer_q.put(prepared)

    def _swap_model_if_due(self) -> None:
        with self._runner_lock:
            new, self._next_runner = self._next_runner, None
        if new is None:
            return
        old, self._runner = self._runner, new
        self.input_size = new.info.input_size
        old.deactivate()
        self._count("model_swaps")
        self.metrics.model_updates.inc()
        log.info("model swapped: %s -> %s (%s)", old.info.version, new.info.version, new.name)

    def _infer_loop(self) -> None:
        finished = False
        try:
            while not finished:
                item = self._infer_q.get()
                if item is END:
                    break
                batch: list[Prepared] = [item]
                while len(batch) < self.cfg.max_batch:
                    try:
                        nxt = self._infer_q.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is END:
                        finished = True
                        break
                    batch.append(nxt)
                self._swap_model_if_due()
                runner = self._runner
                for p in batch:  # prepared for another model's size (just after a swap)
                    if p.size != runner.info.input_size:
                        p.feed_visible, p.feed_thermal = make_feeds(p.visible, p.thermal, runner.info.input_size)
                        p.size = runner.info.input_size
                feeds = {"visible": np.stack([p.feed_visible for p in batch]),
                         "thermal": np.stack([p.feed_thermal for p in batch])}
                t0 = time.perf_counter()
                outputs = runner.infer(feeds)
                dt = time.perf_counter() - t0
                self._add_seconds("infer", dt)
                self.metrics.stage["infer"].observe(dt)
                self.metrics.batch.observe(len(batch))
                self._count("batches")
                for p in batch:  # the feeds are no longer needed: do not hold them while selection decides
                    p.feed_visible = p.feed_thermal = None
                results = [Result(p, {k: v[i] for k, v in outputs.items()}, runner.info) for i, p in enumerate(batch)]
                self._count("pairs", len(batch))
                self.metrics.pairs.inc(len(batch))
                self._mine_q.put(results)
        finally:
            self._mine_q.put(END)

    def _mine_loop(self) -> None:
        cfg = self.cfg
        try:
            while True:
                try:
                    item = self._mine_q.get(timeout=0.5)
                except queue.Empty:
                    if self.live:
                        self._apply(self.selector.poll(time.time()))
                    continue
                if item is END:
                    break
                for result in item:
                    t0 = time.perf_counter()
                    score = self.policy(result)
                    pair = result.prepared.pair
                    if not self._finite(result, score):
                        continue
                    result.selection = (self.policy.name, score)
                    self._pending[pair.index] = result
                    self._apply(self.selector.push(pair.index, score, pair.t, stratum_of(result, cfg)))
                    dt = time.perf_counter() - t0
                    self._add_seconds("mining", dt)
                    self.metrics.stage["mining"].observe(dt)
                    self.metrics.score.observe(score)
                    if isinstance(self.sink, NullSink):
                        continue  # no detections output: skip the per-pair NMS and record entirely
                    self.sink.write({
                        "pair": pair.index, "t": pair.t,
                        "captured_at": {"visible": pair.visible.wall, "thermal": pair.thermal.wall},
                        "score": score, "inconsistency": result.inconsistency, "entropy": result.entropy,
                        "model": result.model.version,
                        "detections": [
                            {**d, "class": result.model.class_names[d["class_id"]]}
                            for d in detections(result, "fused", cfg.det_threshold, cfg.nms_iou)
                        ],
                    })
                self.metrics.threshold.set(self.selector.threshold)
            self._apply(self.selector.flush())
        finally:
            self._spool_q.put(END)

    def _finite(self, result: Result, score: float) -> bool:
        """A NaN or infinite score (an fp16 overflow, a broken model) skips the pair; logged once per run."""
        values = {"score": score, "inconsistency": result.inconsistency, "entropy": result.entropy}
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if not bad:
            return True
        self._count("non_finite")
        self.metrics.non_finite.inc()
        if self.count("non_finite") == 1:
            log.error("model output not finite for pair %d (%s); skipping such pairs (counted as non_finite in "
                      "the summary and msmine_edge_non_finite_scores_total; logged once per run)",
                      result.prepared.pair.index, ", ".join(f"{k}={v}" for k, v in bad.items()))
        return False

    def _apply(self, decision) -> None:
        for item_id in decision.discard:
            self._pending.pop(item_id, None)
        for cand in decision.keep:
            result = self._pending.pop(cand.id, None)
            if result is not None:
                self._spool_q.put(result)

    def _spool_loop(self) -> None:
        cfg = self.cfg
        while True:
            result = self._spool_q.get()
            if result is END:
                return
            t0 = time.perf_counter()
            manifest, files = package(result, device_id=self.device_id, image_format=cfg.image_format,
                                      jpeg_quality=cfg.jpeg_quality, score_threshold=cfg.det_threshold,
                                      iou=cfg.nms_iou, location=self.location)
            full_before = self.spool.disk_full_skipped
            try:
                stored = self.spool.put(manifest, files)
            except (OSError, sqlite3.Error) as exc:
                self._count("spool_errors")
                if self.count("spool_errors") == 1:
                    log.error("spool write failed for pair %d: %s (pairs that cannot be spooled are counted as "
                              "spool_errors; logged once)", result.prepared.pair.index, exc)
                continue
            self.metrics.stage["spool"].observe(time.perf_counter() - t0)
            if self.spool.disk_full_skipped > full_before:
                self._count("disk_full_skipped")
                self.metrics.disk_full_skipped.inc()
                self.metrics.disk_full.set(1)
            if stored:
                self._count("kept")
                self.metrics.kept.inc()
                sel = manifest.get("selection")
                log.info("kept pair %d (score %.4f%s, %s)", result.prepared.pair.index, manifest["score"],
                         "" if not sel or sel["policy"] == "inconsistency" else f", {sel['policy']} {sel['score']:.4f}",
                         manifest["upload_id"][:12])
