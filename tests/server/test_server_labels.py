"""Label hand-off on a real server with real MSRS pairs: batch -> export zip (COCO + Label Studio) ->
import labels (COCO and YOLO) -> `msmine pull` writes the MSRS layout `msmine train` reads."""

from __future__ import annotations

import io
import json
import zipfile

import cv2
import numpy as np
import pytest
import requests

from msmine.loop.cli import main as msmine_main
from tests.server.live_server import LiveServer, make_tokens
from tests.server.upload_helpers import (
    manifest_bytes,
    manifest_for,
    msrs_files,
    msrs_predictions,
    upload_body,
)

pytestmark = pytest.mark.timeout(180)
NAMES = ["00001D", "00002D", "00003N", "00006N", "00009N", "00010N"]


def read_yolo(path):
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.split()]


@pytest.fixture(scope="module")
def flow(tmp_path_factory, msrs_root):
    root = tmp_path_factory.mktemp("labels") / "srv"
    tokens = make_tokens(root, ("pole-1",))
    server = LiveServer(root, ("--rate-limit", "0")).start()
    ids = {}
    try:
        for i, name in enumerate(NAMES):
            files = msrs_files(msrs_root, name)
            m = manifest_for(files, score=0.9 - 0.1 * i, image_size=(640, 480),
                             predictions=msrs_predictions(msrs_root, name))
            body, ctype = upload_body(manifest_bytes(m), files)
            resp = requests.post(server.url + "/api/v1/uploads", data=body, timeout=30,
                                 headers={"Content-Type": ctype, "Authorization": f"Bearer {tokens['pole-1']}"})
            assert resp.status_code == 201, resp.text
            ids[name] = m["upload_id"]
        yield server, tokens, ids
    finally:
        server.stop()


def team_get(server, tokens, path, **params):
    resp = requests.get(server.url + path, params=params, timeout=30,
                        headers={"Authorization": f"Bearer {tokens['team']}"})
    assert resp.status_code == 200, resp.text
    return resp


def team_post(server, tokens, path, **kw):
    return requests.post(server.url + path, timeout=30, headers={"Authorization": f"Bearer {tokens['team']}"}, **kw)


def test_export_zip_is_coco_and_label_studio(flow, msrs_root):
    server, tokens, ids = flow
    batch = team_post(server, tokens, "/api/v1/batches", json={"k": 4, "hamming": -1}).json()
    assert batch["upload_ids"] == [ids[n] for n in NAMES[:4]]
    z = zipfile.ZipFile(io.BytesIO(team_get(server, tokens, batch["export_url"]).content))
    names = set(z.namelist())
    for uid in batch["upload_ids"]:
        assert {f"images/visible/{uid}.jpg", f"images/infrared/{uid}.jpg", f"images/heatmap/{uid}.png"} <= names
    coco_json = json.loads(z.read("annotations/instances_visible.json"))
    assert [c["name"] for c in coco_json["categories"]] == ["person", "bicycle", "car"]
    assert len(coco_json["images"]) == 4
    first = next(i for i in coco_json["images"] if i["file_name"] == f"{ids['00001D']}.jpg")
    anns = [a for a in coco_json["annotations"] if a["image_id"] == first["id"]]
    fused = msrs_predictions(msrs_root, "00001D")["fused"]
    assert len(anns) == len(fused)  # pre-annotations are the fused predictions, in pixels
    x1, y1, x2, y2 = fused[0]["box"]
    assert anns[0]["bbox"] == pytest.approx([x1 * 640, y1 * 480, (x2 - x1) * 640, (y2 - y1) * 480], abs=0.01)
    try:  # the reference COCO reader accepts the file (pycocotools comes with the train extra)
        from pycocotools.coco import COCO
    except ImportError:
        COCO = None
    if COCO is not None:
        coco = COCO()
        coco.dataset = coco_json
        coco.createIndex()
        assert len(coco.getImgIds()) == 4 and len(coco.getAnnIds(imgIds=[first["id"]])) == len(fused)
    tasks = json.loads(z.read("label_studio/tasks_infrared.json"))
    assert tasks[0]["data"]["image"].startswith("/data/local-files/?d=images/infrared/")
    value = tasks[0]["predictions"][0]["result"][0]["value"]
    assert value["x"] == pytest.approx(x1 * 100) and value["rectanglelabels"] == ["person"]
    # the images in the zip are the uploaded bytes
    assert z.read(f"images/visible/{ids['00001D']}.jpg") == (msrs_root / "train/visible/00001D.jpg").read_bytes()


def test_import_coco_and_yolo_then_pull(flow, msrs_root, tmp_path):
    server, tokens, ids = flow
    batch = team_post(server, tokens, "/api/v1/batches", json={"k": 3, "hamming": -1}).json()
    z = zipfile.ZipFile(io.BytesIO(team_get(server, tokens, batch["export_url"]).content))
    coco = json.loads(z.read("annotations/instances_visible.json"))
    # the "labeller" deletes the first box of every image and keeps the rest
    seen, kept = set(), []
    for ann in coco["annotations"]:
        if ann["image_id"] in seen:
            kept.append(ann)
        seen.add(ann["image_id"])
    coco["annotations"] = kept
    resp = team_post(server, tokens, "/api/v1/labels", params={"modality": "visible"},
                     files={"file": ("instances_default.json", json.dumps(coco).encode())})
    assert resp.status_code == 200, resp.text
    assert resp.json()["pairs_labelled"] == 3 and resp.json()["label_sets"] == 3
    # infrared labels come back as YOLO text in an infrared/ folder (modality from the path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as yz:
        yz.writestr("classes.txt", "0 person\n1 bicycle\n2 car\n")
        for name in NAMES[:3]:
            yz.writestr(f"labels/infrared/{ids[name]}.txt",
                        (msrs_root / f"train/labels/infrared/{name}.txt").read_text())
        yz.writestr("labels/infrared/unknown.txt", "0 0.5 0.5 0.1 0.1\n")
    resp = team_post(server, tokens, "/api/v1/labels", files={"file": ("yolo.zip", buf.getvalue())})
    assert resp.status_code == 200, resp.text
    assert resp.json()["unmatched"] == ["labels/infrared/unknown.txt"]
    listed = team_get(server, tokens, "/api/v1/pairs", labelled="true").json()
    assert {i["upload_id"] for i in listed["items"]} == {ids[n] for n in NAMES[:3]}

    out = tmp_path / "pulled"
    rc = msmine_main(["pull", "--server", server.url, "--token", tokens["team"], "--labelled", "--out", str(out)])
    assert rc == 0
    assert (out / "classes.txt").read_text() == "0 person\n1 bicycle\n2 car\n"
    for name in NAMES[:3]:
        uid = ids[name]
        vis = cv2.imread(str(out / f"train/visible/{uid}.png"), cv2.IMREAD_UNCHANGED)
        th = cv2.imread(str(out / f"train/infrared/{uid}.png"), cv2.IMREAD_UNCHANGED)
        assert vis.shape == (480, 640, 3) and th.shape == (480, 640)  # thermal single-channel
        src = cv2.imread(str(msrs_root / f"train/infrared/{name}.jpg"), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(th, src)  # lossless from the uploaded JPEG's decode
        infrared = read_yolo(out / f"train/labels/infrared/{uid}.txt")
        truth = read_yolo(msrs_root / f"train/labels/infrared/{name}.txt")
        assert np.allclose(infrared, truth, atol=1e-5)
        visible = read_yolo(out / f"train/labels/visible/{uid}.txt")
        fused_pred = msrs_predictions(msrs_root, name)["fused"]
        assert len(visible) == max(0, len(fused_pred) - 1)
        # fusion had no labels of its own: it takes the visible set
        assert read_yolo(out / f"train/labels/fusion/{uid}.txt") == visible
    assert len(list((out / "train/visible").iterdir())) == 3


def test_pulled_dataset_opens_with_the_trainer_reader(flow, tmp_path):
    server, tokens, ids = flow
    resp = team_post(server, tokens, "/api/v1/labels", params={"modality": "all"}, files={"file": (
        "c.json", json.dumps({"images": [{"id": 1, "file_name": f"{ids['00006N']}.jpg", "width": 640, "height": 480}],
                              "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [64, 48, 128, 96]}],
                              "categories": [{"id": 3, "name": "car"}]}).encode())})
    assert resp.status_code == 200, resp.text
    out = tmp_path / "ds"
    assert msmine_main(["pull", "--server", server.url, "--token", tokens["team"], "--labelled", "--out", str(out)]) == 0
    lines = (out / f"train/labels/fusion/{ids['00006N']}.txt").read_text().split()
    assert lines[0] == "2" and [float(v) for v in lines[1:]] == pytest.approx([0.2, 0.2, 0.2, 0.2])
    data = pytest.importorskip("msmine.train.data", reason="the trainer package is not in this checkout")
    ds = data.open_dataset(out, "train")
    assert len(ds) >= 1


def test_bad_label_files_store_nothing(flow):
    server, tokens, ids = flow
    before = team_get(server, tokens, "/api/v1/stats").json()["labelled"]
    uid = ids["00010N"]
    cases = [
        ("bad.json", b'{"images": [', "not valid JSON"),
        ("c.json", json.dumps({"images": [{"id": 1, "file_name": f"{uid}.jpg"}],
                               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
                               "categories": [{"id": 1, "name": "tractor"}]}).encode(), "tractor"),
        ("c.json", json.dumps({"images": [{"id": 1, "file_name": "someone-else.jpg"}], "annotations": [],
                               "categories": []}).encode(), "no label matched"),
        ("x.txt", b"hello", "neither COCO JSON, a zip"),
    ]
    for fname, content, message in cases:
        resp = team_post(server, tokens, "/api/v1/labels", files={"file": (fname, content)})
        assert resp.status_code == 400, (fname, resp.text)
        assert message in resp.json()["detail"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as yz:
        yz.writestr(f"{uid}.txt", "0 0.5 0.5\n")
    resp = team_post(server, tokens, "/api/v1/labels", files={"file": ("y.zip", buf.getvalue())})
    assert resp.status_code == 400 and "expected 'class cx cy w h'" in resp.json()["detail"]
    assert team_get(server, tokens, "/api/v1/stats").json()["labelled"] == before


def test_pull_reports_server_errors_in_one_line(tmp_path, capsys):
    rc = msmine_main(["pull", "--server", "http://127.0.0.1:9", "--token", "msm_x", "--labelled",
                      "--out", str(tmp_path / "o")])
    assert rc == 1
    assert "cannot reach server" in capsys.readouterr().err
