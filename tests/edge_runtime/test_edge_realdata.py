"""The edge runtime on the real M3SVD clips ($MSMINE_DATA/m3svd), all on loopback."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from msmine.edge_runtime.cameras import VideoSource
from msmine.edge_runtime.config import EdgeConfig
from msmine.edge_runtime.pipeline import EdgePipeline
from msmine.edge_runtime.runners import load_runner
from msmine.edge_runtime.spool import Spool
from tests.edge_runtime.fakes import LiveWrapper, Subsampled

pytestmark = pytest.mark.realdata
REPO = Path(__file__).resolve().parents[2]


def clip(m3svd_root, name):
    return m3svd_root / name / "visible.mp4", m3svd_root / name / "infrared.mp4"


def config(tmp_path, model, cameras, **kw) -> EdgeConfig:
    base = dict(cameras=cameras, model=str(model), spool_dir=str(tmp_path / "spool"),
                detections=str(tmp_path / "det.jsonl"), device_id="clip-test", threads=2)
    base.update(kw)
    return EdgeConfig(**base)


def det_lines(tmp_path):
    return [json.loads(x) for x in (tmp_path / "det.jsonl").read_text().splitlines()]


def offline_scores(model, vis_path, thr_path):
    """The same model run pair by pair on the decoded files, outside the pipeline."""
    runner = load_runner(model, "cpu", threads=2)
    cv, ct = cv2.VideoCapture(str(vis_path)), cv2.VideoCapture(str(thr_path))
    scores = []
    while True:
        ok_v, v = cv.read()
        ok_t, t = ct.read()
        if not (ok_v and ok_t):
            break
        out = runner.infer({"visible": cv2.cvtColor(v, cv2.COLOR_BGR2RGB)[None],
                            "thermal": cv2.cvtColor(t, cv2.COLOR_BGR2GRAY)[None, :, :, None]})
        scores.append(float(out["inconsistency"][0]))
    return np.array(scores)


def test_all_frames_paired_and_kept_pairs_are_the_offline_top_scores(tmp_path, m3svd_root, clip_model):
    vis, thr = clip(m3svd_root, "0111_1716")
    budget = 8
    cfg = config(tmp_path, clip_model, f"visible={vis},thermal={thr}", budget=f"{budget}/run",
                 decision_delay_s=float("inf"), suppression_gap_s=0.0, adaptive_threshold=False, buffer_size=64)
    summary = EdgePipeline.from_config(cfg).run()
    assert summary["frames"] == {"visible": 151, "thermal": 151}
    assert summary["pairs"] == 151 and summary["unpaired"] == {"visible": 0, "thermal": 0} and summary["dropped"] == 0
    dets = det_lines(tmp_path)
    assert [d["pair"] for d in dets] == list(range(151))
    streamed = np.array([d["score"] for d in dets])
    offline = offline_scores(clip_model, vis, thr)
    assert len(offline) == 151
    np.testing.assert_allclose(streamed, offline, atol=1e-6)
    top = sorted(range(151), key=lambda i: (-offline[i], i))[:budget]
    wall0 = dets[0]["captured_at"]["visible"]
    with sqlite3.connect(tmp_path / "spool" / "index.sqlite") as db:
        manifests = [json.loads(r[0]) for r in db.execute("SELECT manifest FROM items")]
    kept = sorted(round((m["captured_at"]["visible"] - wall0) * 30) for m in manifests)
    assert kept == sorted(top)
    assert all(m["captured_at"]["visible"] == m["captured_at"]["thermal"] for m in manifests)


def test_9hz_thermal_beside_30hz_visible(tmp_path, m3svd_root, clip_model):
    vis, thr = clip(m3svd_root, "0117_1605")
    openers = {"visible": lambda: VideoSource(str(vis), live=False),
               "thermal": lambda: Subsampled(VideoSource(str(thr), live=False), 9.0)}
    cfg = config(tmp_path, clip_model, "", budget="5/run", decision_delay_s=float("inf"), suppression_gap_s=0.0)
    summary = EdgePipeline.from_config(cfg, openers=openers).run()
    n_thermal = summary["frames"]["thermal"]
    assert 120 <= n_thermal <= 124  # 407 frames at 30 Hz = 13.6 s at 9 Hz
    assert summary["pairs"] == n_thermal and summary["unpaired"]["thermal"] == 0
    # one stream's end stops the other: the visible file may stop a few frames before its end
    assert summary["unpaired"]["visible"] == summary["frames"]["visible"] - n_thermal
    assert summary["frames"]["visible"] >= 400
    for d in det_lines(tmp_path):  # each thermal frame met the visible frame captured with it
        assert abs(d["captured_at"]["visible"] - d["captured_at"]["thermal"]) < 1e-6


def test_frozen_and_vanished_real_cameras_are_survived(tmp_path, m3svd_root, clip_model):
    vis, thr = clip(m3svd_root, "0111_1716")
    vis_state, thr_state = {}, {}
    openers = {
        "visible": lambda: LiveWrapper(VideoSource(str(vis), live=False), vis_state, freeze_at=45, freeze_s=3.0),
        "thermal": lambda: LiveWrapper(VideoSource(str(thr), live=False), thr_state, vanish_at=20),
    }
    cfg = config(tmp_path, clip_model, "", budget="100/hour", stall_timeout_s=0.8, reopen_backoff_s=0.1,
                 decision_delay_s=0.5)
    summary = EdgePipeline.from_config(cfg, openers=openers).run(duration_s=4.5)
    assert summary["camera_reopens"]["visible"] >= 1 and summary["camera_reopens"]["thermal"] >= 1
    assert summary["pairs"] > 45  # pairing resumed after both faults (the visible camera froze at frame 45)
    assert summary["unpaired"]["thermal"] > 0  # the thermal frames captured while visible was frozen


def spool_count(spool_dir: Path) -> int:
    try:
        with sqlite3.connect(spool_dir / "index.sqlite", timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_kill_9_with_server_down_then_restart_delivers_every_kept_pair_exactly_once(tmp_path, m3svd_root, clip_model,
                                                                                   stub_server):
    spool_dir = tmp_path / "spool"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MSMINE_TOKEN": "tok"}
    base = [sys.executable, "-m", "msmine.edge_runtime.cli", "--model", str(clip_model), "--spool-dir", str(spool_dir),
            "--server", stub_server.url, "--detections", "", "--threads", "1", "--backoff-max", "0.5"]
    vis, thr = clip(m3svd_root, "0113_1714")
    stub_server.state.mode = "down"
    first = subprocess.Popen(base + ["--cameras", f"visible={vis},thermal={thr}", "--realtime", "--budget", "10/min",
                                     "--decision-delay", "0.3", "--suppression-gap", "0", "--no-adaptive-threshold"],
                             cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while spool_count(spool_dir) < 6:
        assert time.monotonic() < deadline and first.poll() is None, "the first run spooled too little"
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert stub_server.state.records == {}  # the server was down the whole time
    spooled = set(Spool(spool_dir, 1 << 40).ids())  # reopening recovers from the kill
    assert len(spooled) >= 6

    stub_server.state.mode = "up"
    vis2, thr2 = clip(m3svd_root, "0111_1716")
    second = subprocess.run(base + ["--cameras", f"visible={vis2},thermal={thr2}", "--budget", "0/run",
                                    "--drain-timeout", "60"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    assert set(stub_server.state.records) == spooled
    assert all(stub_server.state.created[uid] == 1 for uid in spooled)
    assert spool_count(spool_dir) == 0
    for uid, rec in stub_server.state.records.items():
        assert rec["manifest"]["device_id"] and rec["manifest"]["upload_id"] == uid
    created = sum(stub_server.state.created.values())
    print(f"\nkill -9 durability: {len(spooled)} pair(s) spooled before the kill, {len(stub_server.state.records)} "
          f"on the server after the restart ({created} created, "
          f"{len(spooled) - len(set(stub_server.state.records) & spooled)} lost, {created - len(spooled)} duplicated)")
