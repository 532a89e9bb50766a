"""`edge-runtime` as a user runs it: bad input gives one clear line and exit 1; signals stop cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from msmine.edge_runtime.cli import build_parser, main
from tests.edge_runtime.contract_models import build_contract_model

REPO = Path(__file__).resolve().parents[2]
SYN = "visible=synthetic?size=160x120,thermal=synthetic?size=160x120"


def run_main(capsys, *argv):
    rc = main(list(argv))
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    return rc, errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "100/week"], "error: bad --budget '100/week'"),
        (["--budget", "lots"], "error: bad --budget"),
        (["--cameras", "visible=/no/such.mp4,thermal=synthetic"], "error: visible camera '/no/such.mp4': no such file"),
        (["--cameras", "visible=synthetic"], "error: bad --cameras"),
        (["--score", "magic"], "error: bad score 'magic'"),
        (["--spool-max-bytes", "big"], "error: bad size 'big'"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path, capsys, small_model, args, message):
    argv = ["--cameras", SYN, "--model", str(small_model), "--spool-dir", str(tmp_path / "s"), *args]
    rc, errors = run_main(capsys, *argv)
    assert rc == 1
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_model_without_contract_outputs_or_metadata(tmp_path, capsys):
    for kwargs, message in (({"drop_outputs": ("fused_detections",)}, "lacks output(s) fused_detections"),
                            ({"drop_metadata": ("msmine.class_names",)}, "lacks msmine metadata msmine.class_names")):
        model = build_contract_model(tmp_path / "bad.onnx", height=120, width=160, levels=2, **kwargs)
        rc, errors = run_main(capsys, "--cameras", SYN, "--model", str(model), "--spool-dir", str(tmp_path / "s"))
        assert rc == 1 and len(errors) == 1 and message in errors[0]


def test_missing_model_and_unopenable_camera(tmp_path, capsys, small_model):
    rc, errors = run_main(capsys, "--cameras", SYN, "--spool-dir", str(tmp_path / "s"))
    assert rc == 1 and "no --model given" in errors[0]
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video")
    rc, errors = run_main(capsys, "--cameras", f"visible={not_video},thermal=synthetic", "--model", str(small_model),
                          "--spool-dir", str(tmp_path / "s"))
    assert rc == 1 and errors[0].startswith("error: cannot open visible camera")


def test_unwritable_spool_dir(tmp_path, capsys, small_model):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, errors = run_main(capsys, "--cameras", SYN, "--model", str(small_model), "--spool-dir", str(blocker / "spool"))
    assert rc == 1 and "spool directory" in errors[0] and "not writable" in errors[0]


def test_every_config_field_is_a_flag():
    parser = build_parser()
    flags = {a for action in parser._actions for a in action.option_strings}
    for flag in ("--cameras", "--duration", "--decision-delay", "--suppression-gap", "--spool-max-bytes", "--upload-kbps",
                 "--no-adaptive-threshold", "--realtime", "--metrics-port", "--model-poll", "--pair-tolerance-ms"):
        assert flag in flags


def test_sigterm_stops_cleanly_with_nothing_in_flight_lost(tmp_path, small_model):
    spool = tmp_path / "spool"
    cmd = [sys.executable, "-m", "msmine.edge_runtime.cli", "--cameras", SYN, "--model", str(small_model), "--realtime",
           "--spool-dir", str(spool), "--budget", "100/hour", "--decision-delay", "30", "--suppression-gap", "0",
           "--detections", str(tmp_path / "det.jsonl"), "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 30
    while not (tmp_path / "det.jsonl").exists() or len((tmp_path / "det.jsonl").read_text().splitlines()) < 20:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary = json.loads((spool / "last_run.json").read_text())
    assert summary["pairs"] >= 20
    assert summary["frames"]["visible"] == summary["pairs"] + summary["unpaired"]["visible"]
    assert summary["selector"]["seen"] == summary["pairs"]
    # candidates waiting for their decision delay were committed at stop, within budget, and spooled
    assert summary["kept"] == summary["selector"]["kept"] >= 1
    assert summary["spooled"] == summary["kept"]
    assert len((tmp_path / "det.jsonl").read_text().splitlines()) == summary["pairs"]
    assert "SIGTERM received" in err


def test_structured_json_logs_and_detections_on_stdout(tmp_path, small_model):
    cmd = [sys.executable, "-m", "msmine.edge_runtime.cli", "--cameras",
           "visible=synthetic?size=160x120&frames=5,thermal=synthetic?size=160x120&frames=5", "--model", str(small_model),
           "--spool-dir", str(tmp_path / "s"), "--log-format", "json", "--budget", "1/run"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    non_json = [line for line in proc.stderr.splitlines() if not line.startswith("{")]
    assert not non_json, non_json
    logs = [json.loads(line) for line in proc.stderr.splitlines()]
    assert {"ts", "level", "logger", "msg"} <= set(logs[0]) and any("summary" in r["msg"] for r in logs)
    dets = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [d["pair"] for d in dets] == list(range(5))
