"""`msmine publish`: a run's model into a real server's registry under one name; a worse one is refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from msmine.client import ServerClient
from msmine.model_contract import read_onnx_metadata
from tests.server.live_server import LiveServer, make_tokens


class Out:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def msmine(capsys, caplog):
    """`msmine ARGS` in this process (torch imported once): exit status, stdout, stderr + log lines."""
    from msmine.loop.cli import main

    def call(*args: str) -> Out:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            rc = main(list(args))
        got = capsys.readouterr()
        return Out(rc, got.out, got.err + caplog.text)

    return call


def run_dir(path: Path, value: float | None, seed: int, val_set: str = "msrs test") -> Path:
    """A training run as `msmine train` leaves it: best.pt with its recorded validation, and metrics.json."""
    import torch

    from msmine.train.checkpoint import save_checkpoint
    from msmine.train.config import ModelConfig
    from msmine.train.models import build_model

    torch.manual_seed(seed)
    model = build_model(ModelConfig(input_size=(128, 160)))
    extra = {"best_metric": "fused_AP50", "baseline_value": None}
    if value is not None:
        extra["best_value"] = value
    save_checkpoint(path / "best.pt", model, epoch=1, step=seed + 1, extra=extra)
    (path / "metrics.json").write_text(json.dumps({"val_set": val_set, "refused": None}))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("srv") / "srv"
    tokens = make_tokens(root)
    live = LiveServer(root).start()
    yield live, tokens
    live.stop()


@pytest.mark.slow  # two real exports (TorchScript: ~15 s each; the default dynamo exporter takes ~4x longer)
def test_publish_exports_names_and_guards(server, tmp_path, msrs_root, msmine):
    live, tokens = server
    first = run_dir(tmp_path / "det", 0.230, seed=0)
    out = msmine("publish", str(first), "--server", live.url, "--token", tokens["team"], "--name", "det-1",
                 "--calib-data", str(msrs_root), "--exporter", "torchscript")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "published: det-1 (detect, fused_AP50 0.230)" in out.stdout
    client = ServerClient(live.url, tokens["pole-1"])
    latest = client.latest_model()
    assert latest.version == "det-1"
    assert latest.metadata["validation"] == {"metric": "fused_AP50", "value": 0.230, "where": "msrs test"}
    assert latest.metadata["task"] == "detect"
    # the one name: the file a device downloads carries it as its model version (what manifests and the gallery show)
    got = client.download_model(latest, tmp_path / "got.onnx").path
    assert read_onnx_metadata(got)[0].model_version == "det-1"
    assert (first / "det-1.onnx").is_file()

    worse = run_dir(tmp_path / "det2", 0.094, seed=1)
    out = msmine("publish", str(worse), "--server", live.url, "--token", tokens["team"], "--name", "det-2",
                 "--calib-data", str(msrs_root), "--exporter", "torchscript")
    assert out.returncode == 1
    line = out.stderr.strip().splitlines()[-1]
    assert line == ("error: refused: det-2 validates worse than the published detect model det-1: "
                    "fused_AP50 0.094 < 0.230; --force publishes it anyway"), out.stderr[-2000:]
    assert client.latest_model().version == "det-1"
    assert not (worse / "det-2.onnx").exists()  # refused before the export

    from msmine.model_contract import build_contract_model

    bare = build_contract_model(tmp_path / "bare.onnx", version="bare")  # an ONNX file records no validation
    out = msmine("publish", str(bare), "--server", live.url, "--token", tokens["team"], "--name", "det-2")
    assert out.returncode == 1 and "det-2 has no recorded validation, the published detect model det-1 has " \
        "fused_AP50 0.230" in out.stderr

    out = msmine("publish", str(worse), "--server", live.url, "--token", tokens["team"], "--name", "det-2",
                 "--calib-data", str(msrs_root), "--exporter", "torchscript", "--force")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "publishing anyway (--force)" in out.stderr
    assert client.latest_model().version == "det-2"


def test_publish_an_onnx_renames_a_copy_and_refuses_mistakes(server, tmp_path, msmine):
    from msmine.model_contract import build_contract_model

    live, tokens = server
    model = tmp_path / "m.onnx"
    build_contract_model(model, version="old-name", task="segment")
    before = model.read_bytes()
    out = msmine("publish", str(model), "--server", live.url, "--token", tokens["team"], "--name", "seg-1")
    assert out.returncode == 0, out.stderr[-2000:]
    assert model.read_bytes() == before  # the user's file is left as it was
    client = ServerClient(live.url, tokens["team"])
    info = client.get_model("seg-1")
    assert info.metadata["validation"] is None and info.metadata["task"] == "segment"
    assert read_onnx_metadata(client.download_model(info, tmp_path / "d.onnx").path)[0].model_version == "seg-1"
    # republishing the same file under the same name is a no-op; the device token may not publish
    out = msmine("publish", str(model), "--server", live.url, "--token", tokens["team"], "--name", "seg-1")
    assert out.returncode == 0 and "already published" in out.stdout
    out = msmine("publish", str(model), "--server", live.url, "--token", tokens["pole-1"], "--name", "seg-2")
    assert out.returncode == 1 and "403" in out.stderr
    for args, message in [(("--name", "latest"), "--name must match"),
                          (("--name", "a/b"), "--name must match")]:
        out = msmine("publish", str(model), "--server", live.url, "--token", tokens["team"], *args)
        assert out.returncode == 1 and message in out.stderr
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"refused": "retrained model is worse"}))
    out = msmine("publish", str(tmp_path / "run"), "--server", live.url, "--token", tokens["team"], "--name", "x")
    assert out.returncode == 1 and "no best.pt in" in out.stderr and "retrained model is worse" in out.stderr
    out = msmine("publish", str(tmp_path / "run2"), "--server", live.url, "--token", tokens["team"], "--name", "x")
    assert out.returncode == 1 and "not found" in out.stderr
    run = run_dir(tmp_path / "run3", 0.5, seed=2)
    out = msmine("publish", str(run), "--model", str(model), "--server", live.url, "--token", tokens["team"],
                 "--name", "x")  # an ONNX file of other weights is not this run's export
    assert out.returncode == 1 and f"--model {model} is not an export of {run / 'best.pt'}" in out.stderr
