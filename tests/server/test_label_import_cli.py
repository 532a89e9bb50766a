"""``msmine label-import`` against a real server (uvicorn subprocess on 127.0.0.1): a COCO file with a
box and a mask, a Label Studio export with an unfinished task, and a refused file that changes nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from msmine.client import LABEL_FORMATS, LABEL_MODALITIES, ServerClient, UploadOutcome
from msmine.loop.cli import main as msmine_main
from msmine.masks import decode_mask_png, encode_mask_png
from msmine.server.label_import import FORMATS, MODALITY_CHOICES
from msmine.wire import build_manifest, mask_parts
from tests.server.live_server import LiveServer, make_tokens
from tests.server.upload_helpers import CLASS_NAMES, manifest_for, synthetic_files

pytestmark = pytest.mark.timeout(120)
SEG = ["unlabelled", "car", "person"]
W, H = 96, 72


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A server holding two detection pairs (``det``) and one segmentation pair (``seg``)."""
    root = tmp_path_factory.mktemp("label-import") / "srv"
    tokens = make_tokens(root, ("pole-1",))
    server = LiveServer(root, ("--rate-limit", "0")).start()
    try:
        device = ServerClient(server.url, tokens["pole-1"], timeout=30)
        rng = np.random.default_rng(11)
        server.det = []
        for k in range(2):
            files = synthetic_files(rng)
            manifest = manifest_for(files, score=0.5 + 0.1 * k)
            assert device.upload_pair(manifest, files).outcome is UploadOutcome.CREATED
            server.det.append(manifest["upload_id"])
        files = synthetic_files(rng)
        mask = np.zeros((H, W), np.uint8)
        mask[10:40, 20:60] = 1
        masks = {b: encode_mask_png(mask) for b in ("fused", "visible", "thermal")}
        manifest = build_manifest(
            device_id="pole-1", captured_at={"visible": 1_764_131_300.0, "thermal": 1_764_131_299.98},
            model_version="seg-v1", model_hash="cd" * 32, task="segment", score=0.9, image_size=(W, H),
            class_names=SEG, files=files, predictions={}, masks=masks)
        parts = {**files, **{part: masks[b] for b, part in mask_parts(manifest).items()}}
        assert device.upload_pair(manifest, parts).outcome is UploadOutcome.CREATED
        server.seg = manifest["upload_id"]
        server.team = ServerClient(server.url, tokens["team"], timeout=30)
        server.token = tokens["team"]
        yield server
    finally:
        server.stop()


def cli(capsys, live, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = msmine_main(["label-import", *args, "--server", live.url, "--token", live.token])
    out = capsys.readouterr()
    return rc, out.out, out.err


def all_labels(live) -> dict:
    """Every pair's boxes and mask labels, as the server answers them."""
    out = {}
    for uid in [*live.det, live.seg]:
        detail = live.team.get_pair(uid)
        out[uid] = (detail.labels, detail.raw.get("label_masks"), detail.summary.labelled)
    return out


def test_client_choices_are_the_servers():
    assert LABEL_FORMATS == FORMATS
    assert set(LABEL_MODALITIES) == set(MODALITY_CHOICES)


def test_coco_file_with_a_box_and_a_mask(live, capsys, tmp_path):
    det, seg = live.det[0], live.seg
    coco = {"images": [{"id": 1, "file_name": f"{det}.png", "width": W, "height": H},
                       {"id": 2, "file_name": f"{seg}.png", "width": W, "height": H}],
            "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [24, 18, 48, 36]},
                            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [0, 0, 30, 20], "iscrowd": 0,
                             "segmentation": [[0, 0, 30, 0, 30, 20, 0, 20]]}]}
    path = tmp_path / "infrared" / "instances_default.json"  # the folder names the modality (--modality auto)
    path.parent.mkdir()
    path.write_text(json.dumps(coco))
    rc, out, err = cli(capsys, live, str(path))
    assert rc == 0, err
    assert out.count("\n") == 1
    assert "2 pair(s) labelled, 2 label set(s), 1 mask(s), 0 task(s) skipped" in out
    detail = live.team.get_pair(det)
    assert detail.labels == {"infrared": [[CLASS_NAMES.index("car"), 0.5, 0.5, 0.5, 0.5]]}
    got = decode_mask_png(live.team.label_mask(seg, "infrared"), (W, H), len(SEG))
    expected = np.zeros((H, W), np.uint8)
    expected[0:20, 0:30] = SEG.index("person")
    assert (got == expected).mean() > 0.98  # polygon edges are rasterised


def test_label_studio_export_with_an_unfinished_task(live, capsys, tmp_path):
    done, open_ = live.det
    result = {"original_width": W, "original_height": H, "image_rotation": 0, "id": "r1", "from_name": "label_visible",
              "to_name": "visible", "type": "rectanglelabels", "origin": "manual",
              "value": {"x": 25.0, "y": 50.0, "width": 50.0, "height": 25.0, "rotation": 0,
                        "rectanglelabels": ["person"]}}
    tasks = [{"id": 1, "data": {"upload_id": done}, "annotations": [
                 {"id": 11, "result": [result], "was_cancelled": False, "updated_at": "2026-12-01T23:00:00Z"}]},
             {"id": 2, "data": {"upload_id": open_}, "annotations": []}]
    path = tmp_path / "project-3-at-2026-12-01.json"
    path.write_text(json.dumps(tasks))
    rc, out, err = cli(capsys, live, str(path), "--format", "label-studio")
    assert rc == 0, err
    assert "1 pair(s) labelled, 1 label set(s), 0 mask(s), 1 task(s) skipped (no finished annotation" in out
    assert live.team.get_pair(done).labels["visible"] == [[0, 0.5, 0.625, 0.5, 0.25]]
    assert not live.team.get_pair(open_).summary.labelled


def test_refused_file_exits_1_with_the_reason_and_changes_nothing(live, capsys, tmp_path):
    before = all_labels(live)
    unknown = hashlib.sha256(b"a pair of another server").hexdigest()
    coco = {"images": [{"id": 1, "file_name": f"{live.det[1]}.png", "width": W, "height": H},
                       {"id": 2, "file_name": f"{unknown}.png", "width": W, "height": H}],
            "categories": [{"id": 1, "name": "car"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
                            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]}]}
    path = tmp_path / "instances_visible.json"
    path.write_text(json.dumps(coco))
    rc, out, err = cli(capsys, live, str(path), "--modality", "visible", "--format", "coco")
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: refused (400): 1 labelled image(s) name pairs this server does not hold")
    assert unknown in err and err.rstrip().endswith("nothing was imported")
    assert all_labels(live) == before


def test_usage_errors_are_one_line(live, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("MSMINE_TOKEN", raising=False)
    monkeypatch.delenv("MSMINE_SERVER", raising=False)
    capsys.readouterr()
    assert msmine_main(["label-import", str(tmp_path / "x.json"), "--token", "t"]) == 1
    assert "--server (or $MSMINE_SERVER) is required" in capsys.readouterr().err
    assert msmine_main(["label-import", str(tmp_path / "x.json"), "--server", live.url]) == 1
    assert "--token (or $MSMINE_TOKEN) is required" in capsys.readouterr().err
    rc, _, err = cli(capsys, live, str(tmp_path / "missing.json"))
    assert rc == 1 and err.startswith("error: cannot read") and err.count("\n") == 1
    bad = Path(tmp_path / "bad.json")
    bad.write_text("{}")
    monkeypatch.setenv("MSMINE_TOKEN", "not-a-token")
    capsys.readouterr()
    assert msmine_main(["label-import", str(bad), "--server", live.url]) == 1
    assert capsys.readouterr().err.startswith("error: refused (401)")
