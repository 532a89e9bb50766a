"""The device's fault suite (issue 16, issue 15 item 1): full disk, corrupt or lost spool index, NaN
scores, missing folder frames, refused uploads, a read-only spool. Each test states what must survive.

Video scenarios run on the real M3SVD clips ($MSMINE_DATA/m3svd); the disk-full scenario on a small
tmpfs (root) or, elsewhere, through the spool's write seam with an injected ENOSPC.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from msmine.edge_runtime.cameras import VideoSource
from msmine.edge_runtime.cli import EXIT_NOTHING_UPLOADED, main
from msmine.edge_runtime.config import EdgeConfig, default_spool_dir
from msmine.edge_runtime.pipeline import EdgePipeline
from msmine.edge_runtime.spool import Spool
from msmine.edge_runtime.uploader import Uploader
from msmine.errors import UserError
from tests.edge_runtime.contract_models import build_contract_model, expected_inconsistency
from tests.edge_runtime.helpers import make_pair
from tests.edge_runtime.stub_server import StubServer

SYN = "visible=synthetic?size=160x120&frames={n}&seed=3,thermal=synthetic?size=160x120&frames={n}&seed=3"


def clip(m3svd_root: Path, name: str = "0111_1716") -> str:
    return f"visible={m3svd_root / name / 'visible.mp4'},thermal={m3svd_root / name / 'infrared.mp4'}"


def cfg_for(tmp_path, model, cameras, **kw) -> EdgeConfig:
    base = dict(cameras=cameras, model=str(model), spool_dir=str(tmp_path / "spool"), detections="",
                budget="20/run", decision_delay_s=float("inf"), suppression_gap_s=0.0, adaptive_threshold=False,
                buffer_size=64, device_id="test-dev", threads=1, backoff_max_s=0.2, drain_timeout_s=20.0,
                model_poll_s=0.0)
    base.update(kw)
    return EdgeConfig(**base)


def cli_args(tmp_path, model, cameras, server, spool, *extra) -> list[str]:
    return ["--cameras", cameras, "--model", str(model), "--spool-dir", str(spool), "--server", server, "--token",
            "tok", "--device-id", "test-dev", "--detections", "", "--threads", "1", "--backoff-max", "0.2",
            "--decision-delay", "inf", "--suppression-gap", "0", "--no-adaptive-threshold", "--model-poll", "0",
            *extra]


def tracebacks(text: str) -> int:
    return text.count("Traceback (most recent call last)")


# -- a full disk ------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs (root only); skipped where it cannot be mounted (the seam test still runs)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(disk: Path) -> Path | None:
    """Take every byte left on the disk (None: it was full already)."""
    filler = disk / "filler"
    try:
        fh = open(filler, "wb", buffering=0)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
        return None
    with fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_full_disk_stops_spooling_without_a_traceback_and_a_restart_drains_first(tmp_path, small_disk, small_model,
                                                                               capsys, caplog):
    spool = small_disk / "spool"
    with StubServer(tokens={"tok"}) as srv, caplog.at_level(logging.INFO):
        srv.state.mode = "down"
        rc = main(cli_args(tmp_path, small_model, SYN.format(n=120), srv.url, spool, "--budget", "120/run",
                           "--buffer-size", "200", "--drain-timeout", "0.2"))
        text = capsys.readouterr().err + caplog.text
        assert rc == 0 and tracebacks(text) == 0, text[-3000:]
        assert caplog.text.count("spool disk full") == 1  # logged once, not once per pair
        # last_run.json on the full disk: written if a page was left, else a warning (never a crash)
        assert (spool / "last_run.json").exists() or "last_run.json: No space left" in caplog.text
        spooled = set(Spool(spool, 1 << 40).ids())
        assert len(spooled) >= 5
        caplog.clear()
        filler = fill(small_disk)  # not a byte left: the restart's write check fails
        srv.state.mode = "up"
        rc = main(cli_args(tmp_path, small_model, SYN.format(n=5), srv.url, spool, "--budget", "0/run"))
        text = capsys.readouterr().err + caplog.text
        assert rc == 0 and tracebacks(text) == 0, text[-3000:]
        assert "disk full at start" in caplog.text
        assert set(srv.state.records) == spooled and all(srv.state.created[u] == 1 for u in spooled)
        if filler is not None:
            filler.unlink()
        assert Spool(spool, 1 << 40).count() == 0
        print(f"\ndisk full: {len(spooled)} pair(s) spooled on a 3 MiB disk, all {len(srv.state.records)} "
              f"uploaded exactly once after a restart on the full disk")


def test_records_that_cannot_be_written_are_a_warning_not_a_traceback(tmp_path, small_model, monkeypatch, caplog):
    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.name == "last_run.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    with caplog.at_level(logging.WARNING):
        rc = main(["--cameras", SYN.format(n=5), "--model", str(small_model), "--spool-dir", str(tmp_path / "s"),
                   "--detections", "", "--budget", "1/run", "--threads", "1"])
    assert rc == 0 and "last_run.json: No space left on device" in caplog.text
    assert tracebacks(caplog.text) == 0


def test_disk_full_through_the_write_seam_counts_and_recovers(tmp_path, monkeypatch):
    spool = Spool(tmp_path, 1 << 30)
    kept = [make_pair(i, 0.1 * i) for i in range(1, 4)]
    for m, f in kept:
        assert spool.put(m, f)
    real = Spool._write_file

    def no_space(self, target, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Spool, "_write_file", no_space)
    assert not spool.put(*make_pair(7, 0.9)) and not spool.put(*make_pair(8, 0.9))
    assert spool.disk_full and spool.disk_full_skipped == 2 and spool.count() == 3
    assert sorted(p.name for p in spool.items_dir.iterdir() if p.name.startswith(make_pair(7, 0.9)[0]["upload_id"])) == []
    with StubServer(tokens={"tok"}) as srv:  # uploads go on while the disk is full
        up = Uploader(spool, srv.url, "tok", backoff_initial_s=0.05, backoff_max_s=0.1)
        up.start()
        assert up.drain(10)
        up.stop()
        assert set(srv.state.records) == {m["upload_id"] for m, _ in kept}
    monkeypatch.setattr(Spool, "_write_file", real)
    assert spool.put(*make_pair(9, 0.5)) and not spool.disk_full


# -- the spool index: corrupt, lost, empty ------------------------------------------------------


@pytest.fixture(scope="module")
def clip_spool(tmp_path_factory, m3svd_root):
    """A real spool: 20 pairs kept from a real clip with the server down (its index closed cleanly)."""
    root = tmp_path_factory.mktemp("clip_spool")
    model = build_contract_model(root / "clip.onnx", height=480, width=640, levels=3, k=8)
    files = {"visible": "visible.mp4", "thermal": "infrared.mp4"}
    openers = {cam: (lambda name=name: FirstFrames(VideoSource(str(m3svd_root / "0111_1716" / name), live=False), 60))
               for cam, name in files.items()}
    summary = EdgePipeline.from_config(cfg_for(root, model, "", budget="20/run"), openers=openers).run()
    assert summary["pairs"] == 60 and summary["kept"] == 20
    return root / "spool", model


class FirstFrames:
    """The first ``n`` frames of a replay source (a short stretch of a real clip)."""

    live = False

    def __init__(self, inner, n: int) -> None:
        self.inner, self.n, self.fps, self.description = inner, n, inner.fps, f"{inner.description}[:{n}]"

    def read(self):
        if self.n <= 0:
            return None
        self.n -= 1
        return self.inner.read()

    def close(self):
        self.inner.close()


def restart_and_drain(spool_dir: Path, model: Path, tmp_path: Path) -> tuple[dict, StubServer]:
    with StubServer(tokens={"tok"}) as srv:
        cfg = cfg_for(tmp_path, model, SYN.format(n=3), budget="0/run", spool_dir=str(spool_dir), server=srv.url,
                      token="tok")
        summary = EdgePipeline.from_config(cfg).run()
    return summary, srv


def pair_ids(spool_dir: Path) -> set[str]:
    return {p.name.split(".")[0] for p in (spool_dir / "items").iterdir()}


@pytest.mark.realdata
@pytest.mark.parametrize("damage", ["overwrite page 3", "delete", "empty"])
def test_a_corrupt_or_lost_index_is_rebuilt_from_the_pair_files(tmp_path, clip_spool, damage, caplog):
    src, model = clip_spool
    spool_dir = tmp_path / "spool"
    shutil.copytree(src, spool_dir)
    on_disk = pair_ids(spool_dir)
    assert len(on_disk) == 20
    index = spool_dir / "index.sqlite"
    if damage == "overwrite page 3":
        page = int.from_bytes(index.read_bytes()[16:18], "big")
        assert index.stat().st_size >= 3 * page
        with open(index, "r+b") as fh:
            fh.seek(2 * page)
            fh.write(np.random.default_rng(0).integers(0, 256, page, dtype=np.uint8).tobytes())
    elif damage == "delete":
        index.unlink()
    else:
        index.write_bytes(b"")
    with caplog.at_level(logging.INFO):
        summary, srv = restart_and_drain(spool_dir, model, tmp_path)
    assert set(srv.state.records) == on_disk  # every pair file uploaded: 0 deleted, 0 lost
    assert all(n == 1 for n in srv.state.created.values())
    assert summary["spool_index_rebuilt"] == 20 and summary["uploaded"] == 20
    if damage == "overwrite page 3":
        assert any("damaged" in r.message and r.levelno == logging.ERROR for r in caplog.records)
        assert list((spool_dir / "damaged").glob("index.sqlite.*"))
    print(f"\nindex {damage}: {len(on_disk)} pair files, {summary['spool_index_rebuilt']} rebuilt, "
          f"{len(srv.state.records)} uploaded, 0 deleted")


# -- non-finite scores ---------------------------------------------------------------------------


def test_a_nan_model_is_counted_and_skipped_and_the_run_goes_on(tmp_path, caplog):
    model = build_contract_model(tmp_path / "nan.onnx", height=120, width=160, levels=2, k=6,
                                 non_finite_score=float("nan"))
    with caplog.at_level(logging.INFO):
        summary = EdgePipeline.from_config(cfg_for(tmp_path, model, SYN.format(n=30), budget="5/run")).run()
    assert summary["pairs"] == 30 and summary["non_finite"] == 30 and summary["kept"] == 0
    assert sum("not finite" in r.message for r in caplog.records) == 1  # once per run, not per pair


def test_some_infinite_scores_skip_only_those_pairs(tmp_path, small_model):
    pipeline = EdgePipeline.from_config(cfg_for(tmp_path, small_model, SYN.format(n=30), budget="5/run"))
    real = pipeline._runner

    class EveryThirdInf:
        info, name = real.info, "inf"

        def __init__(self):
            self.n = 0

        def infer(self, feeds):
            out = real.infer(feeds)
            inc = np.array(out["inconsistency"], dtype=np.float32, copy=True)
            for i in range(len(inc)):
                if (self.n + i) % 3 == 0:
                    inc[i] = np.inf
            self.n += len(inc)
            return {**out, "inconsistency": inc}

        def deactivate(self):
            pass

    pipeline._runner = EveryThirdInf()
    summary = pipeline.run()
    assert summary["pairs"] == 30 and summary["non_finite"] == 10 and summary["kept"] == 5
    assert pipeline.metrics.non_finite._value.get() == 10


# -- image folders: pairing by name, stills ---------------------------------------------------------


@pytest.mark.realdata
def test_a_missing_thermal_frame_never_shifts_the_pairs(tmp_path, m3svd_root, clip_model, caplog):
    folders = {cam: tmp_path / cam for cam in ("visible", "thermal")}
    for cam, name in (("visible", "visible.mp4"), ("thermal", "infrared.mp4")):
        folders[cam].mkdir()
        cap = cv2.VideoCapture(str(m3svd_root / "0111_1716" / name))
        for i in range(30):
            ok, frame = cap.read()
            assert ok
            cv2.imwrite(str(folders[cam] / f"{i:04d}.png"), frame if cam == "visible" else
                        cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        cap.release()
    (folders["thermal"] / "0013.png").unlink()
    det = tmp_path / "det.jsonl"
    cfg = cfg_for(tmp_path, clip_model, f"visible={folders['visible']},thermal={folders['thermal']}", budget="3/run",
                  detections=str(det))
    with caplog.at_level(logging.INFO):
        summary = EdgePipeline.from_config(cfg).run()
    assert summary["pairs"] == 29
    assert summary["sources"]["folders"]["unmatched"] == {"visible": 1, "thermal": 0}
    assert sum("visible/0013.png" in r.message for r in caplog.records) == 1
    names = [f"{i:04d}.png" for i in range(30) if i != 13]
    offline = [expected_inconsistency(cv2.cvtColor(cv2.imread(str(folders["visible"] / n)), cv2.COLOR_BGR2RGB),
                                      cv2.imread(str(folders["thermal"] / n), cv2.IMREAD_GRAYSCALE)) for n in names]
    streamed = [json.loads(x)["inconsistency"] for x in det.read_text().splitlines()]
    mismatched = sum(abs(a - b) > 1e-5 for a, b in zip(streamed, offline, strict=True))
    assert mismatched == 0
    print(f"\nfolder replay, 1 of 30 thermal frames missing: {summary['pairs']} pairs, {mismatched} mismatched")


def test_image_folders_without_a_frame_rate_are_stills(tmp_path, small_model):
    rng = np.random.default_rng(1)
    for cam in ("visible", "thermal"):
        (tmp_path / cam).mkdir()
        for i in range(12):
            cv2.imwrite(str(tmp_path / cam / f"img{i:02d}.png"), rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    cams = f"visible={tmp_path / 'visible'},thermal={tmp_path / 'thermal'}"
    stills = EdgePipeline.from_config(cfg_for(tmp_path / "a", small_model, cams, budget="5/run",
                                              suppression_gap_s=1.0)).run()
    assert stills["sources"]["mode"] == "stills" and stills["kept"] == 5  # 12 unrelated images, not one event
    video = EdgePipeline.from_config(cfg_for(tmp_path / "b", small_model,
                                             cams.replace(",", "?fps=30,") + "?fps=30", budget="5/run",
                                             suppression_gap_s=1.0)).run()
    assert video["sources"]["mode"] == "video" and video["kept"] == 1  # 0.4 s of video frames: one event


# -- identity and refusals ------------------------------------------------------------------------


def test_identity_comes_from_the_token_and_a_wrong_device_id_is_one_line(tmp_path, small_model, capsys):
    with StubServer(tokens={"tok"}, devices={"tok": "pole-7"}) as srv:
        cfg = cfg_for(tmp_path, small_model, SYN.format(n=20), budget="3/run", device_id="", server=srv.url, token="tok")
        summary = EdgePipeline.from_config(cfg).run()
        assert summary["uploaded"] == 3 and summary["upload"]["device_id"] == "pole-7"
        assert {r["manifest"]["device_id"] for r in srv.state.records.values()} == {"pole-7"}
        args = cli_args(tmp_path, small_model, SYN.format(n=5), srv.url, tmp_path / "s2")
        rc = main(args)  # --device-id test-dev, but the token is pole-7's
        errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
        assert rc == 1 and len(errors) == 1 and "is not the token's device 'pole-7'" in errors[0]


def test_refused_pairs_are_set_aside_and_resent_after_the_fix(tmp_path, small_model, caplog):
    spool = tmp_path / "spool"
    with StubServer(tokens={"tok"}, devices={"tok": "pole-7"}) as srv:
        srv.state.whoami = False  # an older server: the wrong id is only found out by the uploads
        with caplog.at_level(logging.INFO):
            rc = main(cli_args(tmp_path, small_model, SYN.format(n=30), srv.url, spool, "--budget", "4/run"))
        err = caplog.text
        assert rc == EXIT_NOTHING_UPLOADED and "NOTHING UPLOADED" in err and tracebacks(err) == 0
        assert err.count("server refused pair") == 1  # one error line, not one per pair
        refused = json.loads((spool / "last_run.json").read_text())
        assert refused["refused"] == 4 and refused["uploaded"] == 0 and refused["upload"]["refused_by_status"] == {"403": 4}
        posts = [s for p, s in srv.state.requests if p == "/api/v1/uploads"]
        assert posts == [403] * 4  # each refused once, never retried with backoff
        # the fix: the right device id; refused pairs are re-addressed and re-sent ahead of nothing, new ones too
        args = cli_args(tmp_path, small_model, SYN.format(n=30).replace("seed=3", "seed=4"), srv.url, spool,
                        "--budget", "2/run")
        args[args.index("--device-id") + 1] = "pole-7"
        caplog.clear()
        rc = main(args)
        assert rc == 0, caplog.text[-2000:]
        fixed = json.loads((spool / "last_run.json").read_text())
        assert fixed["upload"]["requeued"] == 4 and fixed["uploaded"] == 6 and fixed["refused"] == 0
        assert len(srv.state.records) == 6 and all(n == 1 for n in srv.state.created.values())
        print(f"\nrefusals: 4 refused (403) set aside, exit {EXIT_NOTHING_UPLOADED}; after the fix 4 re-sent + 2 new "
              f"= {len(srv.state.records)} on the server")


def test_resend_refused_after_a_fix_on_the_server(tmp_path, small_model, caplog):
    spool = tmp_path / "spool"
    with StubServer(tokens={"tok"}, devices={"tok": "pole-7"}) as srv:
        srv.state.whoami = False
        args = cli_args(tmp_path, small_model, SYN.format(n=20), srv.url, spool, "--budget", "3/run")
        assert main(args) == EXIT_NOTHING_UPLOADED
        srv.state.devices = {"tok": "test-dev"}  # the token is re-issued for this device; nothing changed here
        again = cli_args(tmp_path, small_model, SYN.format(n=5), srv.url, spool, "--budget", "0/run")
        with caplog.at_level(logging.INFO):
            assert main(again) == 0  # same identity: the refused pairs stay aside, and the log says so
        assert "were refused by the server" in caplog.text and srv.state.records == {}
        assert main([*again, "--resend-refused"]) == 0
        summary = json.loads((spool / "last_run.json").read_text())
        assert summary["upload"]["requeued"] == 3 and summary["uploaded"] == 3 and len(srv.state.records) == 3


def test_a_real_server_names_the_device_of_a_token(tmp_path, small_model):
    pytest.importorskip("fastapi")
    from tests.server.live_server import LiveServer, make_tokens

    root = tmp_path / "server"
    root.mkdir()
    tokens = make_tokens(root, ("pole-1",))
    server = LiveServer(root).start()
    try:
        cfg = cfg_for(tmp_path, small_model, SYN.format(n=20), budget="2/run", device_id="", server=server.url,
                      token=tokens["pole-1"])
        summary = EdgePipeline.from_config(cfg).run()  # the README's step 5: no --device-id
        assert summary["uploaded"] == 2 and summary["upload"]["device_id"] == "pole-1"
        bad = cfg_for(tmp_path / "b", small_model, SYN.format(n=5), device_id="pole-2", server=server.url,
                      token=tokens["pole-1"])
        with pytest.raises(UserError, match="not the token's device 'pole-1'"):
            EdgePipeline.from_config(bad).run()
    finally:
        server.stop()


# -- a read-only spool episode ----------------------------------------------------------------------


def test_failed_deletes_are_logged_as_such_and_uploads_are_counted_once(tmp_path, monkeypatch, caplog):
    spool = Spool(tmp_path, 1 << 30)
    for i in range(8):
        spool.put(*make_pair(i, 0.1 + 0.05 * i))
    real_delete = Spool.delete
    read_only = {"on": True}

    def delete(self, upload_id):
        if read_only["on"]:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        real_delete(self, upload_id)

    monkeypatch.setattr(Spool, "delete", delete)
    with StubServer(tokens={"tok"}) as srv, caplog.at_level(logging.INFO):
        up = Uploader(spool, srv.url, "tok", backoff_initial_s=0.05, backoff_max_s=0.1, delete_retry_s=0.2)
        up.start()
        deadline = time.monotonic() + 10
        while len(srv.state.records) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert up.uploaded == 8 == len(srv.state.records) and spool.count() == 8  # counted, still spooled
        sent = len(srv.state.requests)
        time.sleep(0.5)
        assert len(srv.state.requests) == sent  # not sent again while the spool is read-only
        read_only["on"] = False  # writable again: the confirmed pairs are deleted, not sent again
        deadline = time.monotonic() + 10
        while spool.count() and time.monotonic() < deadline:
            time.sleep(0.05)
        up.stop()
        assert len(srv.state.requests) == sent
    assert up.uploaded == len(srv.state.records) == 8 and spool.count() == 0
    assert not any("cannot read spooled pair" in r.message for r in caplog.records)
    assert sum("cannot delete it from the spool" in r.message for r in caplog.records) == 8


# -- smaller device items ---------------------------------------------------------------------------


def test_the_default_spool_is_a_per_user_state_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_spool_dir() == tmp_path / "state" / "msmine" / "spool"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_spool_dir() == tmp_path / "home" / ".local" / "state" / "msmine" / "spool"
    assert EdgeConfig().spool_dir == ""  # not "spool" relative to the working directory


def test_constructing_a_pipeline_does_no_io(tmp_path, small_model):
    cfg = cfg_for(tmp_path, small_model, SYN.format(n=5), detections=str(tmp_path / "out" / "det.jsonl"))
    pipeline = EdgePipeline.from_config(cfg)
    assert not (tmp_path / "out" / "det.jsonl").exists()  # the detections output opens in start()
    summary = pipeline.run()
    assert summary["pairs"] == 5 and (tmp_path / "out" / "det.jsonl").exists()
