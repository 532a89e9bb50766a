"""The device pipeline: capture -> pair -> preprocess -> infer -> select -> spool -> upload.

Every stage is a thread joined to the next by a bounded queue, so capture, inference, selection
and upload overlap. Replays apply back-pressure (nothing is dropped); live cameras drop the oldest
frame when the pipeline is behind (counted). When frames queue in front of the model they are
micro-batched. A stop (signal, ``--duration``, end of file) flows down the queues as an end
marker: every captured pair is inferred, the selector is flushed, every kept pair is spooled
before the run ends, and the uploader gets ``drain_timeout_s`` to empty the spool.
"""

from __future__ import annotations

import json
import logging
import math
import queue
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
    ReplayClock,
    make_opener,
    open_at_start,
    parse_cameras,
)
from msmine.edge_runtime.config import (
    EdgeConfig,
    check_config,
    default_device_id,
    parse_budget,
    parse_location,
    parse_size,
)
from msmine.edge_runtime.metrics import EdgeMetrics
from msmine.edge_runtime.model_update import ModelFetcher, ModelUpdater, fetch_initial_model
from msmine.edge_runtime.outputs import NullSink, open_sink
from msmine.edge_runtime.packaging import Prepared, Result, detections, make_feeds, package, prepare
from msmine.edge_runtime.pairing import Pairer
from msmine.edge_runtime.registration import load_warp
from msmine.edge_runtime.runners import Runner, load_runner
from msmine.edge_runtime.spool import Spool
from msmine.edge_runtime.uploader import Uploader
from msmine.errors import UserError
from msmine.selector import StreamConfig, StreamingSelector, combined

log = logging.getLogger(__name__)

Opener = Callable[[], FrameSource]
STOP_GRACE_S = 3.0  # after a stop, how long a camera may take to end its stream


def make_stream_config(cfg: EdgeConfig) -> StreamConfig:
    budget, window = parse_budget(cfg.budget)
    try:
        return StreamConfig(
            budget=budget, window_s=window, decision_delay_s=cfg.decision_delay_s,
            suppression_gap_s=cfg.suppression_gap_s, buffer_size=cfg.buffer_size,
            adaptive_threshold=cfg.adaptive_threshold, target_rate_factor=cfg.target_rate_factor,
            initial_threshold=cfg.threshold,
        )
    except ValueError as exc:
        raise UserError(f"bad selection setting: {exc}") from None


class ScorePolicy:
    """The selection score of a pair: the model's inconsistency, entropy, both, or a seeded random draw."""

    def __init__(self, name: str, weight: float = 0.5, seed: int = 0) -> None:
        self.name = name
        self.weight = weight
        self._rng = np.random.default_rng(seed)

    def __call__(self, result: Result) -> float:
        if self.name == "inconsistency":
            return result.inconsistency
        if self.name == "entropy":
            return result.entropy
        if self.name == "combined":
            return float(combined(np.clip(result.inconsistency, 0, 1), np.clip(result.entropy, 0, 1), self.weight))
        return float(self._rng.random())


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

    def __init__(self, cfg: EdgeConfig, runner: Runner, sources: dict[str, tuple[FrameSource, Opener]],
                 spool: Spool, metrics: EdgeMetrics | None = None, fetcher: ModelFetcher | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics or EdgeMetrics()
        self.spool = spool
        self.device_id = cfg.device_id or default_device_id()
        self.location = parse_location(cfg.location)
        self.policy = ScorePolicy(cfg.score, cfg.combined_weight, cfg.seed)
        self.selector = StreamingSelector(make_stream_config(cfg))
        self._carry_budget_over_restart()
        self.warp = load_warp(cfg.registration)
        self.sink = open_sink(cfg.detections)
        self._runner = runner
        self._next_runner: Runner | None = None
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
        self.uploader = Uploader(
            spool, cfg.server, cfg.token, kbps=cfg.upload_kbps, timeout_s=cfg.upload_timeout_s,
            backoff_max_s=cfg.backoff_max_s, seed=cfg.seed, on_uploaded=self._count_upload,
        ) if cfg.server else None
        self.updater = ModelUpdater(fetcher, runner.info.sha256, self.install_model, cfg.model_poll_s,
                                    cfg.backend, cfg.threads, cfg.ort_spin) if fetcher and cfg.model_poll_s > 0 else None
        self._count_lock = threading.Lock()
        self.counts = {"pairs": 0, "kept": 0, "dropped": 0, "batches": 0, "model_swaps": 0}
        self.mining_seconds = 0.0
        self.infer_seconds = 0.0
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
        spool = Spool(cfg.spool_dir, parse_size(cfg.spool_max_bytes))
        specs = parse_cameras(cfg.cameras) if openers is None else {cam: f"<{cam} source>" for cam in CAMERAS}
        openers = openers or {cam: make_opener(cam, spec) for cam, spec in specs.items()}
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
        return cls(cfg, runner, sources, spool, fetcher=fetcher)

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

    def install_model(self, runner: Runner) -> None:
        """Swap in a new model at the next batch boundary (called by the model updater)."""
        with self._runner_lock:
            self._next_runner = runner

    def _count_drop(self, camera: str) -> None:
        with self._count_lock:  # called from the capture threads and the pairing thread
            self.counts["dropped"] += 1
        self.metrics.dropped.labels(camera).inc()

    def _count_upload(self, item, seconds: float) -> None:
        self.metrics.uploaded.inc()
        self.metrics.upload_bytes.inc(item.bytes)
        self.metrics.stage["upload"].observe(seconds)

    def start(self) -> None:
        self.started = time.monotonic()
        self.rss["start"] = _rss_bytes()
        stages = [("pairing", self._pair_loop, None), ("inference", self._infer_loop, self._infer_q),
                  ("mining", self._mine_loop, self._mine_q), ("spool", self._spool_loop, self._spool_q)]
        self._threads = [threading.Thread(target=self._stage, args=(fn, q), name=name, daemon=True)
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
                self.metrics.pairs_per_second.set((self.counts["pairs"] - last_pairs) / (now - last_t))
                last_pairs, last_t = self.counts["pairs"], now
                self.metrics.spool_bytes.set(self.spool.total_bytes())
                self.metrics.spool_pairs.set(self.spool.count())
                self.metrics.evicted.set(self.spool.evicted)
        return self.finish()

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
        summary = self.summary()
        self.spool.close()
        log.info("summary: %s", json.dumps(summary))
        if self.error is not None:
            raise RuntimeError("a pipeline stage failed (see the log above)") from self.error
        return summary

    def summary(self) -> dict:
        elapsed = max((self.stopped or time.monotonic()) - self.started, 1e-9)
        pairs = self.counts["pairs"]
        return {
            "elapsed_s": round(elapsed, 3),
            "frames": {cam: cap.index for cam, cap in self.captures.items()},
            "pairs": pairs,
            "pairs_per_s": round(pairs / elapsed, 2),
            "unpaired": dict(self.pairer.unpaired),
            "dropped": self.counts["dropped"],
            "kept": self.counts["kept"],
            "evicted": self.spool.evicted,
            "uploaded": self.uploader.uploaded if self.uploader else 0,
            "spooled": self.spool.count(),
            "camera_reopens": {cam: cap.reopens for cam, cap in self.captures.items()},
            "selector": dict(self.selector.stats),
            "threshold": round(self.selector.threshold, 6),
            "mining_us_per_pair": round(1e6 * self.mining_seconds / max(pairs, 1), 2),
            "infer_ms_per_pair": round(1e3 * self.infer_seconds / max(pairs, 1), 3),
            "batches": self.counts["batches"],
            "model": {"version": self._runner.info.version, "sha256": self._runner.info.sha256,
                      "runner": self._runner.name, "swaps": self.counts["model_swaps"]},
            "rss_bytes": dict(self.rss),
        }

    # -- stages --------------------------------------------------------------------------------

    def _stage(self, loop: Callable[[], None], inbox: queue.Queue | None) -> None:
        """Run one stage; a bug stops the run cleanly (the rest still drains) and is re-raised at the end."""
        try:
            loop()
        except Exception as exc:
            log.exception("%s stage failed; stopping", threading.current_thread().name)
            self.error = exc
            self.request_stop()
            while inbox is not None and inbox.get() is not END:
                pass
        finally:
            if loop == self._spool_loop:
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
        self.counts["model_swaps"] += 1
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
                self.infer_seconds += dt
                self.metrics.stage["infer"].observe(dt)
                self.metrics.batch.observe(len(batch))
                self.counts["batches"] += 1
                for p in batch:  # the feeds are no longer needed: do not hold them while selection decides
                    p.feed_visible = p.feed_thermal = None
                results = [Result(p, {k: v[i] for k, v in outputs.items()}, runner.info) for i, p in enumerate(batch)]
                self.counts["pairs"] += len(batch)
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
                    self._pending[pair.index] = result
                    self._apply(self.selector.push(pair.index, score, pair.t))
                    dt = time.perf_counter() - t0
                    self.mining_seconds += dt
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
            try:
                stored = self.spool.put(manifest, files)
            except OSError as exc:
                log.error("spool write failed for pair %d: %s", result.prepared.pair.index, exc)
                continue
            self.metrics.stage["spool"].observe(time.perf_counter() - t0)
            if stored:
                self.counts["kept"] += 1
                self.metrics.kept.inc()
                log.info("kept pair %d (score %.4f, %s)", result.prepared.pair.index, manifest["score"],
                         manifest["upload_id"][:12])
