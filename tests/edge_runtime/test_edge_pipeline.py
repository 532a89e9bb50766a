"""The pipeline end to end on synthetic cameras: selection, spool, outputs, faults, model swaps."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
import urllib.request

import pytest

from msmine.edge_runtime.cameras import SyntheticSource
from msmine.edge_runtime.config import EdgeConfig
from msmine.edge_runtime.pipeline import EdgePipeline
from msmine.edge_runtime.spool import Spool
from tests.edge_runtime.contract_models import build_contract_model
from tests.edge_runtime.fakes import LiveWrapper

SYN = "synthetic?size=160x120&frames={n}&seed=2"


def config(tmp_path, model, n=60, **kw) -> EdgeConfig:
    base = dict(cameras=f"visible={SYN.format(n=n)},thermal={SYN.format(n=n)}", model=str(model),
                spool_dir=str(tmp_path / "spool"), detections=str(tmp_path / "det.jsonl"), budget="3/run",
                decision_delay_s=float("inf"), suppression_gap_s=0.0, adaptive_threshold=False, buffer_size=64,
                device_id="test-dev", threads=1)
    base.update(kw)
    return EdgeConfig(**base)


def spooled_scores(spool_dir):
    with sqlite3.connect(spool_dir / "index.sqlite") as db:
        return [r[0] for r in db.execute("SELECT score FROM items")]


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_synthetic_replay_keeps_the_top_scores_and_writes_detections(tmp_path, small_model):
    cfg = config(tmp_path, small_model, n=60)
    summary = EdgePipeline.from_config(cfg).run()
    assert summary["frames"] == {"visible": 60, "thermal": 60}
    assert summary["pairs"] == 60 and summary["unpaired"] == {"visible": 0, "thermal": 0}
    assert summary["kept"] == 3 and summary["selector"]["seen"] == 60
    dets = lines(tmp_path / "det.jsonl")
    assert [d["pair"] for d in dets] == list(range(60))
    assert dets[0]["detections"][0]["class"] == "person" and len(dets[0]["detections"]) == 2  # NMS merged one
    top = sorted(d["score"] for d in dets)[-3:]
    spool = Spool(tmp_path / "spool", 1 << 30)
    assert sorted(round(s, 5) for s in spooled_scores(tmp_path / "spool")) == [round(s, 5) for s in top]
    manifest = spool.next_pending().manifest
    assert manifest["device_id"] == "test-dev" and manifest["image_size"] == [160, 120]
    assert set(manifest["predictions"]) == {"fused", "visible", "thermal"}


def test_synthetic_pair_at_30_and_9_hz(tmp_path, small_model):
    cameras = "visible=synthetic?size=160x120&frames=90,thermal=synthetic?size=160x120&frames=27&fps=9"
    summary = EdgePipeline.from_config(config(tmp_path, small_model, cameras=cameras)).run()
    assert summary["pairs"] == 27 and summary["unpaired"]["thermal"] == 0
    assert summary["unpaired"]["visible"] == summary["frames"]["visible"] - 27 >= 60
    for d in lines(tmp_path / "det.jsonl"):
        assert abs(d["captured_at"]["visible"] - d["captured_at"]["thermal"]) <= 1 / 60


def test_score_policies_change_what_is_kept(tmp_path, small_model):
    kept = {}
    for policy in ("inconsistency", "entropy", "random", "combined"):
        cfg = config(tmp_path / policy, small_model, n=40, score=policy, seed=1)
        EdgePipeline.from_config(cfg).run()
        kept[policy] = set(Spool(tmp_path / policy / "spool", 1 << 30).ids())
        assert len(kept[policy]) == 3
    assert kept["inconsistency"] != kept["entropy"]
    assert kept["random"] != kept["inconsistency"]


def test_duration_stops_an_endless_stream(tmp_path, small_model):
    cfg = config(tmp_path, small_model, n=0, realtime=True, budget="100/hour", decision_delay_s=0.2)
    t0 = time.monotonic()
    summary = EdgePipeline.from_config(cfg).run(duration_s=1.5)
    assert 1.4 < time.monotonic() - t0 < 6
    assert 10 <= summary["pairs"] <= 60
    assert summary["frames"]["visible"] == summary["pairs"] + summary["unpaired"]["visible"]


def synthetic_live(camera, state, **faults):
    return lambda: LiveWrapper(SyntheticSource(camera, 30.0, 2, (160, 120)), state, **faults)


@pytest.mark.parametrize("fault", [{"vanish_at": 20}, {"freeze_at": 20, "freeze_s": 4.0}])
def test_live_camera_that_vanishes_or_freezes_is_reopened_and_the_run_goes_on(tmp_path, small_model, fault):
    state_t: dict = {}
    openers = {"visible": synthetic_live("visible", {}), "thermal": synthetic_live("thermal", state_t, **fault)}
    cfg = config(tmp_path, small_model, budget="100/hour", decision_delay_s=0.2, stall_timeout_s=0.5,
                 reopen_backoff_s=0.1)
    pipeline = EdgePipeline.from_config(cfg, openers=openers)
    summary = pipeline.run(duration_s=3.0)
    assert summary["camera_reopens"]["thermal"] >= 1
    assert summary["pairs"] > 25  # kept pairing after the fault (20 frames before it)
    assert pipeline.metrics.camera_states()["thermal"] in ("opened", "streaming")


def test_model_update_swaps_between_batches_without_dropping_frames(tmp_path, small_model, stub_server):
    v2 = build_contract_model(tmp_path / "v2.onnx", height=120, width=160, levels=2, k=6, version="v2", scale=0.5)
    stub_server.state.publish("v2", v2.read_bytes())
    cfg = config(tmp_path, small_model, n=75, realtime=True, server=stub_server.url, token="tok",
                 model_poll_s=0.2, drain_timeout_s=5.0)
    pipeline = EdgePipeline.from_config(cfg)
    summary = pipeline.run()
    assert summary["pairs"] == 75 and summary["model"]["swaps"] == 1 and summary["model"]["version"] == "v2"
    versions = [d["model"] for d in lines(tmp_path / "det.jsonl")]
    assert versions[0] == "test-v1" and versions[-1] == "v2" and len(versions) == 75
    assert summary["uploaded"] == 3 and len(stub_server.state.records) == 3


def test_model_update_keeps_the_old_model_when_the_new_one_is_bad(tmp_path, small_model, stub_server):
    from msmine.edge_runtime.model_update import ModelFetcher, ModelUpdater

    broken = build_contract_model(tmp_path / "b.onnx", height=120, width=160, levels=2, drop_outputs=("entropy",))
    installed = []
    updater = ModelUpdater(ModelFetcher(stub_server.url, "tok", tmp_path / "models"), "0" * 64, installed.append, 1.0)
    assert not updater.check_once()  # nothing published
    stub_server.state.publish("v3", broken.read_bytes())
    assert not updater.check_once() and installed == [] and len(updater.failed) == 1
    assert not updater.check_once()  # remembered: not downloaded again
    stub_server.state.publish("v4", small_model.read_bytes() + b"")
    stub_server.state.models["v4"] = small_model.read_bytes()
    assert updater.check_once() and len(installed) == 1 and installed[0].info.task == "detect"


def test_detections_on_a_unix_socket_and_metrics_endpoint(tmp_path, small_model):
    sock_path = str(tmp_path / "det.sock")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = config(tmp_path, small_model, n=0, realtime=True, detections=f"unix:{sock_path}", metrics_port=port,
                 budget="100/hour", decision_delay_s=0.2)
    pipeline = EdgePipeline.from_config(cfg)
    received = []

    def client():
        time.sleep(0.3)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(sock_path)
            c.settimeout(3)
            buf = b""
            while buf.count(b"\n") < 5:
                buf += c.recv(65536)
            received.extend(json.loads(x) for x in buf.split(b"\n")[:5])

    th = threading.Thread(target=client)
    th.start()
    runner = threading.Thread(target=pipeline.run, kwargs={"duration_s": 2.0})
    runner.start()
    time.sleep(1.2)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    th.join()
    runner.join()
    assert len(received) == 5 and "detections" in received[0]
    for name in ("msmine_edge_pairs_total", "msmine_edge_stage_seconds_bucket{le=", "msmine_edge_score_bucket",
                 "msmine_edge_spool_bytes", 'msmine_edge_camera_state{camera="thermal",state="streaming"} 1.0',
                 'msmine_edge_camera_state{camera="thermal",state="lost"} 0.0',
                 'msmine_edge_unpaired_frames_total{camera="visible"} 0.0',
                 'msmine_edge_upload_refused_total{status="403"} 0.0',
                 "msmine_edge_pairs_per_second", "msmine_edge_kept_total", "msmine_edge_uploaded_total"):
        assert name in body, name
    assert "_created" not in body


def test_budget_is_not_refilled_by_a_restart(tmp_path, small_model):
    cfg = config(tmp_path, small_model, n=30, budget="3/hour", decision_delay_s=0.0)
    assert EdgePipeline.from_config(cfg).run()["kept"] == 3
    assert EdgePipeline.from_config(config(tmp_path, small_model, n=30, budget="3/hour")).run()["kept"] == 0
    assert EdgePipeline.from_config(config(tmp_path, small_model, n=30, budget="5/hour")).run()["kept"] == 2


def test_segmentation_model(tmp_path):
    model = build_contract_model(tmp_path / "seg.onnx", height=120, width=160, task="segment")
    summary = EdgePipeline.from_config(config(tmp_path, model, n=20, budget="2/run")).run()
    assert summary["pairs"] == 20 and summary["kept"] == 2
    with sqlite3.connect(tmp_path / "spool" / "index.sqlite") as db:
        manifests = [json.loads(r[0]) for r in db.execute("SELECT manifest FROM items")]
    assert all(m["task"] == "segment" and m["predictions"] == {} for m in manifests)
    assert all(d["detections"] == [] for d in lines(tmp_path / "det.jsonl"))


def test_image_folders_with_grey_and_alpha_images(tmp_path, small_model):
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for cam, channels in (("visible", 4), ("thermal", 1)):
        folder = tmp_path / cam
        folder.mkdir()
        for i in range(6):
            shape = (120, 160, channels) if channels > 1 else (120, 160)
            cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 256, shape, dtype=np.uint8))
        (folder / "notes.txt").write_text("not an image")
    cfg = config(tmp_path, small_model, cameras=f"visible={tmp_path / 'visible'}?fps=9,thermal={tmp_path / 'thermal'}?fps=9")
    summary = EdgePipeline.from_config(cfg).run()
    assert summary["pairs"] == 6 and summary["kept"] == 3


def test_a_failing_stage_stops_the_run_instead_of_hanging(tmp_path, small_model):
    pipeline = EdgePipeline.from_config(config(tmp_path, small_model, n=0, realtime=True))
    real = pipeline._runner

    class Broken:
        info, name = real.info, "broken"

        def infer(self, feeds):
            raise ZeroDivisionError("a bug in inference")

        def deactivate(self):
            pass

    pipeline._runner = Broken()
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="pipeline stage failed") as exc:
        pipeline.run()
    assert isinstance(exc.value.__cause__, ZeroDivisionError)
    assert time.monotonic() - t0 < 10


def test_stop_does_not_hang_on_a_camera_blocked_in_a_read(tmp_path, small_model):
    openers = {"visible": synthetic_live("visible", {}),
               "thermal": synthetic_live("thermal", {}, freeze_at=10, freeze_s=60.0)}
    cfg = config(tmp_path, small_model, budget="100/hour", decision_delay_s=0.2, stall_timeout_s=1000.0)
    t0 = time.monotonic()
    summary = EdgePipeline.from_config(cfg, openers=openers).run(duration_s=1.0)
    assert time.monotonic() - t0 < 8
    assert 1 <= summary["pairs"] <= 11  # the thermal camera froze at its 10th frame
