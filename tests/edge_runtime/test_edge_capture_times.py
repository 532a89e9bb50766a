"""Replayed files: capture times lie before the moment each frame is read, never after (issue 15, item 9)."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np

from msmine.edge_runtime.config import EdgeConfig
from msmine.edge_runtime.pipeline import EdgePipeline


def test_fast_replay_of_a_folder_is_placed_in_the_past(tmp_path, small_model):
    """60 frames at 2 fps are 30 s of video replayed in a second or two: before the fix, capture times ran up
    to 30 s into the future (later than the server's receive time); now the replay ends when it starts."""
    rng = np.random.default_rng(0)
    for cam in ("visible", "thermal"):
        (tmp_path / cam).mkdir()
        for i in range(60):
            cv2.imwrite(str(tmp_path / cam / f"{i:04d}.png"), rng.integers(0, 255, (120, 160, 3), np.uint8))
    cfg = EdgeConfig(cameras=f"visible={tmp_path / 'visible'}?fps=2,thermal={tmp_path / 'thermal'}?fps=2",
                     model=str(small_model), spool_dir=str(tmp_path / "spool"), detections=str(tmp_path / "d.jsonl"),
                     budget="3/run", decision_delay_s=float("inf"), suppression_gap_s=0.0, adaptive_threshold=False,
                     device_id="test-dev", threads=1)
    start = time.time()
    summary = EdgePipeline.from_config(cfg).run()
    end = time.time()
    assert summary["pairs"] == 60
    dets = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    times = [d["captured_at"]["visible"] for d in dets]
    assert all(d["captured_at"]["visible"] == d["captured_at"]["thermal"] for d in dets)  # one origin
    assert max(times) <= end  # no capture time after the run (was: start + 29.5 s)
    assert start - 30.5 <= min(times) <= start  # 30 s of video ending when the replay began
    assert np.allclose(np.diff(times), 0.5)  # the media clock's spacing is kept
