"""README.md's "The loop, command by command", walked literally on real pairs against a real server.

The commands are read from the README's fenced ``bash`` block (continuation lines joined, comments
dropped) and run one by one in a temporary directory laid out as the README assumes (``../shared/data``
is ``$MSMINE_DATA``, ``configs/`` the checkout's). The only changes are the ones the README's "quick
walk" paragraph names for a user (small step counts, a folder pair instead of two cameras) plus a
free port in place of 8080; the test checks that paragraph says exactly what it applies. Between
``edge-runtime`` and ``msmine pull`` the test plays the labelling team (the README's prose step): it
labels every uploaded pair with its real MSRS boxes through the label-import API. Each step's effect
is checked: files written, uploads landed, labels imported, pairs pulled, the retrained model not
worse than the first on the walk's validation set (or refused with the one line), the registry's name.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from msmine.client import ServerClient
from msmine.model_contract import read_onnx_metadata
from tests.calibration.test_calibration_register import H_TRUE, _checkerboard, _paste
from tests.server.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent

# What the README's quick-walk paragraph tells a user to add (checked to be printed there, verbatim).
QUICK = {
    "msmine train": "--set max_steps=8 --set batch_size=8 --set data.val_limit=32 --set data.cache=false",
    "msmine evaluate": "--limit 32",
    "--precision int8": "--calib-pairs 16 --fidelity-limit 32",
    "msmine calibrate threshold": "--limit 120",
    "exports": "--exporter torchscript",
}
CAMERA_PAIRS = 24  # real MSRS train pairs the device replays (a folder pair, as the README allows)


def readme_loop() -> list[str]:
    """The commands of the README's loop section, in order (backslash continuations joined, comments dropped)."""
    text = README.read_text()
    section = text.split("## The loop, command by command", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert blocks, "README's loop section has no ```bash block"
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                commands.append(" ".join(line.split()))
    return commands


def quick_section() -> str:
    text = README.read_text()
    return text.split("## The loop, command by command", 1)[1].split("\n## ", 1)[0]


def test_readme_quick_walk_paragraph_names_what_the_walk_adds():
    section = quick_section()
    for flags in QUICK.values():
        assert flags in section, f"README's quick-walk paragraph does not give {flags!r}"


def camera_folders(msrs_root: Path, dest: Path) -> dict[str, Path]:
    """A folder pair of real MSRS train pairs (every 40th, day and night), named as in MSRS."""
    names = sorted(p.stem for p in (msrs_root / "train" / "visible").glob("*.jpg"))[::40][:CAMERA_PAIRS]
    out = {}
    for cam, folder in (("visible", "visible"), ("thermal", "infrared")):
        (dest / cam).mkdir(parents=True)
        for name in names:
            os.symlink(msrs_root / "train" / folder / f"{name}.jpg", dest / cam / f"{name}.jpg")
        out[cam] = dest / cam
    return out


def target_images(msrs_root: Path, dest: Path) -> None:
    """vis.png / th.png of step 3: a real pair with a checkerboard in view of both cameras."""
    vis = cv2.imread(str(msrs_root / "test" / "visible" / "00427D.jpg"))
    th = cv2.imread(str(msrs_root / "test" / "infrared" / "00427D.jpg"), cv2.IMREAD_GRAYSCALE)
    board = _checkerboard()
    cv2.imwrite(str(dest / "vis.png"), _paste(vis, board, 200, 100))
    h, w = th.shape
    cv2.imwrite(str(dest / "th.png"), cv2.warpPerspective(_paste(th, 255 - board, 200, 100), H_TRUE, (w, h)))


def thumb(image: np.ndarray) -> np.ndarray:
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (32, 24), interpolation=cv2.INTER_AREA).astype(np.float32)


def label_uploads(client: ServerClient, msrs_root: Path, cameras: dict[str, Path]) -> int:
    """The data team's part: every uploaded pair gets its real MSRS boxes (matched by image), imported."""
    thumbs = {p.stem: thumb(cv2.imread(str(p))) for p in sorted(cameras["visible"].glob("*.jpg"))}
    entries = {}
    for item in client.iter_pairs(max_items=1000):
        got = cv2.imdecode(np.frombuffer(client.pair_file(item.upload_id, "visible"), np.uint8), cv2.IMREAD_COLOR)
        name = min(thumbs, key=lambda n: float(np.abs(thumbs[n] - thumb(got)).mean()))
        assert float(np.abs(thumbs[name] - thumb(got)).mean()) < 2.0, f"upload {item.upload_id} matches no pair"
        for modality in ("visible", "infrared"):
            src = msrs_root / "train" / "labels" / modality / f"{name}.txt"
            entries[f"{modality}/{item.upload_id}.txt"] = src.read_text() if src.exists() else ""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("classes.txt", (msrs_root / "classes.txt").read_text())
        for path, text in entries.items():
            zf.writestr(path, text)
    result = client.post_labels(buf.getvalue(), "labels.zip")
    assert not result.unmatched
    return result.pairs_labelled


@pytest.mark.slow
@pytest.mark.realdata
def test_readme_loop_walked_literally(tmp_path, msmine_data, msrs_root):
    walk = tmp_path / "work"
    walk.mkdir()
    (tmp_path / "shared").mkdir()
    os.symlink(Path(msmine_data).resolve(), tmp_path / "shared" / "data")  # the README's ../shared/data
    os.symlink(ROOT / "configs", walk / "configs")
    target_images(msrs_root, walk)
    cameras = camera_folders(msrs_root, tmp_path / "cameras")
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", XDG_STATE_HOME=str(tmp_path / "state"),
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = client = retrain = None
    first = labelled = uploaded = None  # set by the steps that measure them
    seen: list[str] = []
    timings: dict[str, float] = {}

    def sh(command: str, timeout: float = 600) -> subprocess.CompletedProcess:
        start = time.monotonic()
        out = subprocess.run(["bash", "-c", command], cwd=walk, env=env, capture_output=True, text=True,
                             timeout=timeout)
        timings[command[:60]] = round(time.monotonic() - start, 1)
        return out

    def ok(out: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
        assert out.returncode == 0, f"README step failed: {what}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
        assert "Traceback" not in out.stderr, out.stderr[-4000:]
        return out

    try:
        for command in readme_loop():
            command = command.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace("--port 8080", f"--port {port}")
            words = shlex.split(command)
            if re.fullmatch(r"[A-Z_]+=\S+", command):  # D=../shared/data/msrs
                name, value = command.split("=", 1)
                env[name] = value
                seen.append("set")
                continue
            if command.startswith("msmine train"):
                command += " " + QUICK["msmine train"]
                out = sh(command)
                run = walk / words[words.index("--out") + 1]
                metrics = json.loads((run / "metrics.json").read_text())
                if "--init" not in words:
                    ok(out, command)
                    assert (run / "best.pt").is_file() and metrics["best"]["value"] is not None
                    first = metrics["best"]["value"]
                    seen.append("train")
                else:  # the retrain: not worse than the model it replaces on the same set, or refused in one line
                    assert metrics["init"]["value"] is not None and metrics["val_set"].endswith("msrs test")
                    assert metrics["init"]["value"] == pytest.approx(first, abs=1e-6)  # same model, same set
                    assert metrics["train_pairs"] > labelled  # pulled + replayed
                    if out.returncode == 0:
                        assert (run / "best.pt").is_file() and metrics["best"]["value"] >= metrics["init"]["value"]
                    else:
                        assert out.stderr.strip().splitlines()[-1].startswith(
                            "error: retrained model is worse than the one it replaces:"), out.stderr[-3000:]
                        assert not (run / "best.pt").exists()
                    retrain = out
                    seen.append("retrain")
            elif command.startswith("msmine evaluate"):
                out = ok(sh(command + " " + QUICK["msmine evaluate"]), command)
                assert out.stderr.count("MSRS test: ") == 1, out.stderr[-3000:]  # issue 15: was logged twice
                report = json.loads((walk / words[words.index("--out") + 1]).read_text())
                assert 0.0 <= report["metrics"]["fused"]["all"]["AP50"] <= 1.0
                seen.append("evaluate")
            elif command.startswith("msmine export") and "--precision int8" in command:
                out = sh(command + " " + QUICK["--precision int8"] + " " + QUICK["exports"])
                model = walk / words[words.index("--out") + 1]
                if out.returncode == 0:  # an 8-step model may fail the honest fidelity gate: then one line, no file
                    assert model.is_file() and read_onnx_metadata(model)[0].precision == "int8"
                else:
                    assert out.returncode == 1 and "Traceback" not in out.stderr and not model.exists()
                    assert out.stderr.strip().splitlines()[-1].startswith("error: ")
                seen.append("export-int8")
            elif command.startswith("msmine export"):
                ok(sh(command + " " + QUICK["exports"]), command)
                assert read_onnx_metadata(walk / words[words.index("--out") + 1])[0].task == "detect"
                seen.append("export")
            elif command.startswith("msmine calibrate register"):
                ok(sh(command), command)
                assert (walk / "reg.yaml").is_file()
                seen.append("register")
            elif command.startswith("msmine calibrate threshold"):
                ok(sh(command + " " + QUICK["msmine calibrate threshold"]), command)
                assert "threshold" in (walk / words[words.index("--out") + 1]).read_text()
                seen.append("threshold")
            elif command.startswith("msmine token create"):
                token = ok(sh(command), command).stdout.strip().splitlines()[-1]
                env["TEAM_TOKEN" if "data-team" in command else "DEVICE_TOKEN"] = token
                seen.append("token")
            elif command.startswith("msmine serve"):
                log = open(tmp_path / "serve.log", "wb")
                server = subprocess.Popen(["bash", "-c", command], cwd=walk, env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
                client = ServerClient(f"http://127.0.0.1:{port}", env["TEAM_TOKEN"])
                deadline = time.monotonic() + 60
                while not client.is_up(timeout=1) and time.monotonic() < deadline:
                    assert server.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
                    time.sleep(0.2)
                assert client.is_up(), "server did not come up"
                seen.append("serve")
            elif command.startswith("msmine publish"):
                name = words[words.index("--name") + 1]
                out = sh(command if "--model" in words else command + " " + QUICK["exports"])  # this one exports
                run = walk / words[2]
                if "retrain" in seen and retrain.returncode != 0:  # nothing to publish: said in one line
                    assert out.returncode == 1 and f"no best.pt in {words[2]}" in out.stderr
                elif "retrain" in seen and out.returncode == 1:
                    assert "refused:" in out.stderr and "validates worse" in out.stderr
                else:
                    ok(out, command)
                    latest = ServerClient(f"http://127.0.0.1:{port}", env["DEVICE_TOKEN"]).latest_model()
                    assert latest.version == name and latest.metadata["validation"]["metric"] == "fused_AP50"
                assert run.exists()
                seen.append("publish")
            elif command.startswith("edge-runtime"):
                cams = f"visible={cameras['visible']},thermal={cameras['thermal']}"
                command = re.sub(r"--cameras \S+", f"--cameras {cams}", command)
                ok(sh(command), command)
                summary = json.loads((tmp_path / "state" / "msmine" / "spool" / "last_run.json").read_text())
                assert summary["pairs"] == CAMERA_PAIRS
                uploaded = summary["uploaded"]
                assert uploaded >= 1, f"the device uploaded nothing: {json.dumps(summary)[:1500]}"
                assert client.stats()["pairs"] == uploaded  # every upload landed
                seen.append("edge")
            elif command.startswith("msmine pull"):
                labelled = label_uploads(client, msrs_root, cameras)
                assert labelled == uploaded
                ok(sh(command), command)
                out_dir = walk / words[words.index("--out") + 1]
                assert len(list((out_dir / "train" / "visible").iterdir())) == labelled
                seen.append("pull")
            else:
                pytest.fail(f"README loop command this walk does not know: {command}")
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, 15)
            server.wait(timeout=20)
        print(json.dumps(timings, indent=1))
    assert seen == ["set", "train", "evaluate", "export", "export-int8", "register", "threshold", "token", "token",
                    "serve", "publish", "edge", "pull", "retrain", "publish"], seen
