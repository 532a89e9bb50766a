"""The Label Studio connector against a real Label Studio server (tests/labelstudio.py) and a real
collection server (a uvicorn subprocess), on real MSRS pairs:

push a batch (a project: the visible and thermal image side by side, the branch's predictions as
pre-annotations, tasks in rank order, images by signed URL), label it through Label Studio's own
API as a labeller would, pull the labels back, re-run both (nothing doubles, nothing changes), bad
input (Label Studio down, a wrong token, a project of another batch, tasks for pairs the server does
not hold: one line, nothing changes), then `msmine pull --labelled` and `msmine train` on the
labels. The tests share one module of state and run in file order.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.parse
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from msmine.loop.cli import main as msmine_main
from msmine.masks import encode_mask_png
from msmine.server import mask_formats as mf
from msmine.wire import FILE_PARTS, MASK_PARTS, build_manifest
from tests.labelstudio import free_port, label_studio  # noqa: F401 - the session fixture
from tests.server.live_server import LiveServer, make_tokens
from tests.server.upload_helpers import CLASS_NAMES, manifest_for, msrs_files, msrs_predictions, multipart

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

DET_NAMES = ["00001D", "00002D", "00003N", "00006N"]  # MSRS pairs with people and cars
SEG_NAMES = ["00005N", "00007N"]


class World:
    """The collection server, Label Studio, and what the tests have done so far."""

    def __init__(self, root: Path, ls) -> None:
        self.root = root
        self.ls = ls
        self.tokens = make_tokens(root, ("pole-1",))
        self.server = LiveServer(root, ("--rate-limit", "0")).start()
        self.auth = {"Authorization": f"Bearer {self.tokens['team']}"}
        self.batch: str = ""
        self.project: int = 0
        self.ids: list[str] = []  # the batch, rank order
        self.expected: dict[tuple[str, str], list] = {}  # (upload_id, modality) -> YOLO boxes

    def get(self, path: str, **kw):
        return requests.get(self.server.url + path, headers=self.auth, timeout=60, **kw)

    def post(self, path: str, **kw):
        return requests.post(self.server.url + path, headers=self.auth, timeout=60, **kw)

    def cli(self, capsys, *args: str, ls_url: str | None = None, ls_token: str | None = None,
            batch: str | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = msmine_main(["label-studio", *args, "--server", self.server.url, "--token", self.tokens["team"],
                          "--batch", batch or self.batch, "--ls-url", ls_url or self.ls.url,
                          "--ls-token", ls_token or self.ls.token])
        out = capsys.readouterr()
        return rc, out.out, out.err

    def labels(self) -> list[tuple]:
        """Every stored label row of the collection server (read-only, from its SQLite file)."""
        conn = sqlite3.connect(f"file:{self.root / 'msmine.sqlite3'}?mode=ro", uri=True)
        try:
            cols = [r[1] for r in conn.execute("PRAGMA table_info(labels)")]
            keep = [c for c in cols if c not in ("imported_at", "source")]
            return conn.execute(f"SELECT {', '.join(keep)} FROM labels ORDER BY upload_id, modality").fetchall()
        finally:
            conn.close()

    def predictions(self, task_id: int) -> list[dict]:
        r = self.ls.api("GET", f"/api/predictions/?task={task_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def ls_tasks(self, project: int | None = None) -> list[dict]:
        r = self.ls.api("GET", f"/api/projects/{project or self.project}/export?exportType=JSON&download_all_tasks=true")
        assert r.status_code == 200, r.text
        return sorted(r.json(), key=lambda t: t["id"])


@pytest.fixture(scope="module")
def world(tmp_path_factory, label_studio, msrs_root):  # noqa: F811 - the fixture imported above
    w = World(tmp_path_factory.mktemp("ls-world") / "srv", label_studio)
    try:
        for i, name in enumerate(DET_NAMES):
            files = msrs_files(msrs_root, name)
            manifest = manifest_for(files, score=0.9 - 0.1 * i, image_size=(640, 480), captured_at=1_764_000_000.0 + i,
                                    predictions=msrs_predictions(msrs_root, name))
            body, ctype = multipart([("manifest", json.dumps(manifest).encode(), "manifest.json"),
                                     *[(p, files[p], f"{p}.bin") for p in FILE_PARTS]])
            r = requests.post(f"{w.server.url}/api/v1/uploads", data=body, timeout=60,
                              headers={"Content-Type": ctype, "Authorization": f"Bearer {w.tokens['pole-1']}"})
            assert r.status_code == 201, r.text
        yield w
    finally:
        w.server.stop()


def _box_result(image: str, label: str, x: float, y: float, width: float, height: float, rid: str) -> dict:
    """A rectangle as Label Studio's editor saves it (percent of the image)."""
    return {"id": rid, "type": "rectanglelabels", "from_name": f"label_{image}", "to_name": image,
            "original_width": 640, "original_height": 480, "image_rotation": 0,
            "value": {"x": x, "y": y, "width": width, "height": height, "rotation": 0, "rectanglelabels": [label]}}


def _yolo(label: str, x: float, y: float, width: float, height: float) -> list:
    return [CLASS_NAMES.index(label), (x + width / 2) / 100, (y + height / 2) / 100, width / 100, height / 100]


def _same_boxes(got: list, want: list) -> bool:
    return len(got) == len(want) and all(
        g[0] == w[0] and np.allclose(g[1:], w[1:], atol=1e-4) for g, w in zip(sorted(got), sorted(want)))


def test_push_makes_a_project_of_the_batch(world, capsys):
    started = time.monotonic()
    batch = world.post("/api/v1/batches", json={"k": 4, "hamming": -1}).json()
    world.batch, world.ids = batch["batch_id"], batch["upload_ids"]
    assert len(world.ids) == 4
    rc, out, err = world.cli(capsys, "push", "--branch", "fused")
    assert rc == 0, err
    assert "created Label Studio project" in out and "4 tasks added" in out and "0 already there" in out
    world.project = int(out.split("project ", 1)[1].split(":")[0])
    project = world.ls.api("GET", f"/api/projects/{world.project}").json()
    assert project["sampling"] == "Sequential sampling" and project["title"] == f"msmine batch {world.batch}"
    assert f"msmine-batch: {world.batch}" in project["description"]
    config = project["label_config"]
    for image in ("visible", "thermal"):  # both images, boxes (and masks) on each
        assert f'<Image name="{image}" value="${image}"' in config
        assert f'<RectangleLabels name="label_{image}" toName="{image}"' in config
    assert all(f'value="{n}"' in config for n in CLASS_NAMES)
    tasks = world.ls_tasks()
    assert [t["data"]["upload_id"] for t in tasks] == world.ids  # rank order: sequential sampling, top first
    scores = [t["data"]["score"] for t in tasks]
    assert scores == sorted(scores, reverse=True) and [t["meta"]["score"] for t in tasks] == scores
    assert [t["data"]["rank"] for t in tasks] == [1, 2, 3, 4]
    for t in tasks:
        uid = t["data"]["upload_id"]
        pair = world.get(f"/api/v1/pairs/{uid}").json()
        fused = pair["predictions"]["fused"]
        (pred,) = world.predictions(t["id"])
        assert len(pred["result"]) == 2 * len(fused) > 0  # the fused boxes on the visible and the thermal image
        assert {r["to_name"] for r in pred["result"]} == {"visible", "thermal"}
        first = next(r for r in pred["result"] if r["to_name"] == "visible")
        x1, y1, x2, y2 = fused[0]["box"]
        assert np.allclose([first["value"]["x"], first["value"]["width"]], [x1 * 100, (x2 - x1) * 100])
        for image, part in (("visible", "visible"), ("thermal", "thermal")):
            url = t["data"][image]
            assert url.startswith(f"{world.server.url}/signed/{uid}/{part}?exp=")
            img = requests.get(url, timeout=30)  # what a labeller's browser does: no token
            assert img.status_code == 200
            assert img.content == world.get(f"/api/v1/pairs/{uid}/files/{part}").content
    # the data team's token reaches Label Studio nowhere
    assert world.tokens["team"] not in json.dumps(tasks) + json.dumps(project)
    print(f"push of 4 pairs took {time.monotonic() - started:.1f} s; Label Studio started in "
          f"{world.ls.started_in_s:.1f} s (template database: {world.ls.used_template})")


def test_labeller_browser_shows_both_images(world):
    """What a labeller sees: Label Studio's editor in headless Debian chromium loads both images of the
    pair by their signed URLs (cross-origin, no token) beside the pre-annotations."""
    from tests.server.test_server_browser import ARGS, chromium_or_skip

    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    task = world.ls_tasks()[0]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(world.ls.url + "/user/login/", timeout=120_000)
            page.fill("input[name=email]", world.ls.username)
            page.fill("input[name=password]", world.ls.password)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle", timeout=120_000)
            page.goto(f"{world.ls.url}/projects/{world.project}/data?task={task['id']}", timeout=120_000)
            page.wait_for_selector("text=Thermal", timeout=120_000)
            loaded = "() => [...document.images].filter(i => i.src.includes('/signed/') && i.naturalWidth > 0)" \
                     ".map(i => i.src.split('?')[0].split('/').slice(-2).join('/'))"
            page.wait_for_function(f"({loaded})().length >= 2", timeout=60_000)
            shown = set(page.evaluate(loaded))
            uid = task["data"]["upload_id"]
            assert {f"{uid}/visible", f"{uid}/thermal"} <= shown, shown
            assert "There was an issue loading URL" not in page.content()
        finally:
            browser.close()


def test_push_again_adds_nothing(world, capsys):
    before = world.ls_tasks()
    rc, out, err = world.cli(capsys, "push")
    assert rc == 0, err
    assert "updated Label Studio project" in out and "0 tasks added" in out and "4 already there" in out
    assert "0 given fresh image URLs" in out  # a week left on each
    after = world.ls_tasks()
    assert [(t["id"], t["data"]) for t in after] == [(t["id"], t["data"]) for t in before]


def test_a_personal_access_token_works_too(world, capsys):
    """Label Studio's default token kind (a JWT refresh token, sent after exchange as Bearer)."""
    r = world.ls.api("POST", "/api/token/")
    assert r.status_code == 201, r.text
    pat = r.json()["token"]
    assert pat.count(".") == 2 and pat != world.ls.token
    rc, out, err = world.cli(capsys, "push", ls_token=pat)
    assert rc == 0 and "0 tasks added" in out and "4 already there" in out, err


def test_labeller_annotates_and_pull_brings_the_labels_back(world, capsys):
    tasks = world.ls_tasks()
    # task 1: the pre-annotations accepted as they are, and on the thermal image one more person
    t1 = tasks[0]
    accepted = [{**r, "origin": "prediction"} for r in world.predictions(t1["id"])[0]["result"]]
    extra = _box_result("thermal", "person", 80.0, 40.0, 5.0, 20.0, "t1extra")
    # task 2: drawn from scratch: a car on the visible image only, nothing on the thermal one
    car = _box_result("visible", "car", 10.0, 50.0, 20.0, 10.0, "t2car")
    # task 3: looked at, nothing there (an empty, submitted annotation); task 4: not labelled yet
    for task, result in ((t1, accepted + [extra]), (tasks[1], [car]), (tasks[2], [])):
        r = world.ls.api("POST", f"/api/tasks/{task['id']}/annotations/", {"result": result, "lead_time": 12.5})
        assert r.status_code == 201, r.text
    uid1, uid2, uid3, uid4 = world.ids
    pair1 = world.get(f"/api/v1/pairs/{uid1}").json()
    fused = [[d["class_id"], (d["box"][0] + d["box"][2]) / 2, (d["box"][1] + d["box"][3]) / 2,
              d["box"][2] - d["box"][0], d["box"][3] - d["box"][1]] for d in pair1["predictions"]["fused"]]
    world.expected = {(uid1, "visible"): fused, (uid1, "infrared"): fused + [_yolo("person", 80.0, 40.0, 5.0, 20.0)],
                      (uid2, "visible"): [_yolo("car", 10.0, 50.0, 20.0, 10.0)],
                      # an empty annotation is drawn on no image: it says "nothing here" for every modality
                      (uid3, "visible"): [], (uid3, "infrared"): [], (uid3, "fusion"): []}
    started = time.monotonic()
    rc, out, err = world.cli(capsys, "pull")
    assert rc == 0, err
    assert "imported 3 finished tasks" in out and "1 tasks not finished yet" in out, out
    print(f"pull of 3 annotated tasks took {time.monotonic() - started:.1f} s")
    for (uid, modality), want in world.expected.items():
        got = world.get(f"/api/v1/pairs/{uid}").json()["labels"]
        assert _same_boxes(got[modality], want), (uid[:8], modality, got.get(modality), want)
    # task 2's labeller drew nothing on the thermal image: no infrared label set was made up for it
    assert "infrared" not in world.get(f"/api/v1/pairs/{uid2}").json()["labels"]
    assert world.get(f"/api/v1/pairs/{uid4}").json()["labelled"] is False


def test_pull_and_push_again_change_nothing(world, capsys):
    before = world.labels()
    assert len(before) == len(world.expected)
    rc, out, err = world.cli(capsys, "pull")
    assert rc == 0, err
    assert world.labels() == before  # replaced by the same labels: nothing doubled, nothing changed
    rc, out, err = world.cli(capsys, "push")
    assert rc == 0 and "0 tasks added" in out, err
    assert len(world.ls_tasks()) == 4


def _one_error_line(rc: int, err: str) -> str:
    assert rc == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_label_studio_down_or_refusing_the_token_changes_nothing(world, capsys):
    labels, tasks = world.labels(), world.ls_tasks()
    down = f"http://127.0.0.1:{free_port()}"
    for command in ("push", "pull"):
        line = _one_error_line(*world.cli(capsys, command, ls_url=down)[::2])
        assert f"cannot reach Label Studio at {down}" in line
        line = _one_error_line(*world.cli(capsys, command, ls_token="not-the-token-0123456789")[::2])
        assert "refused the API token (401" in line
    assert world.labels() == labels and world.ls_tasks() == tasks


def test_a_project_of_another_batch_is_refused(world, capsys):
    labels, tasks = world.labels(), world.ls_tasks()
    other = world.post("/api/v1/batches", json={"k": 2, "hamming": -1}).json()["batch_id"]
    for command in ("push", "pull"):
        line = _one_error_line(*world.cli(capsys, command, "--project", str(world.project), batch=other)[::2])
        assert f"holds batch {world.batch}, not batch {other}" in line
    # pulling a batch nobody pushed
    line = _one_error_line(*world.cli(capsys, "pull", batch=other)[::2])
    assert f"no Label Studio project holds batch {other}" in line
    assert world.labels() == labels and world.ls_tasks() == tasks
    assert not [p for p in world.ls.api("GET", "/api/projects").json()["results"] if other in p["description"]]


def test_annotations_for_pairs_the_server_does_not_hold_change_nothing(world, capsys):
    labels = world.labels()
    tasks = world.ls_tasks()
    # the labeller edits task 2 (so a partial import would show) ...
    car2 = _box_result("visible", "car", 50.0, 50.0, 10.0, 10.0, "t2car2")
    r = world.ls.api("POST", f"/api/tasks/{tasks[1]['id']}/annotations/", {"result": [car2]})
    assert r.status_code == 201, r.text
    # ... and someone added a task for a pair that is not on this server
    ghost = {**tasks[0]["data"], "upload_id": "ab" * 32}
    r = world.ls.api("POST", f"/api/projects/{world.project}/import", [{"data": ghost}])
    assert r.status_code == 201, r.text
    ghost_task = next(t for t in world.ls_tasks() if t["data"]["upload_id"] == "ab" * 32)
    r = world.ls.api("POST", f"/api/tasks/{ghost_task['id']}/annotations/",
                     {"result": [_box_result("visible", "person", 1.0, 1.0, 5.0, 5.0, "g")]})
    assert r.status_code == 201, r.text
    line = _one_error_line(*world.cli(capsys, "pull")[::2])
    assert "pairs this server does not hold" in line and "Nothing was imported" in line
    assert world.labels() == labels
    # once the stray task is gone, the edit comes through
    assert world.ls.api("DELETE", f"/api/tasks/{ghost_task['id']}/").status_code == 204
    rc, out, err = world.cli(capsys, "pull")
    assert rc == 0, err
    got = world.get(f"/api/v1/pairs/{world.ids[1]}").json()["labels"]["visible"]
    assert _same_boxes(got, [_yolo("car", 50.0, 50.0, 10.0, 10.0)])
    world.expected[(world.ids[1], "visible")] = got


def test_segmentation_batch_round_trip(world, capsys, msrs_root):
    """Masks: the fused mask as polygon pre-annotations; a labeller paints with the brush; exact back."""
    seg_names = [ln.split(maxsplit=1)[1] for ln in (msrs_root / "segmentation_classes.txt").read_text().splitlines()]
    truth = {}
    for i, name in enumerate(SEG_NAMES):
        files = msrs_files(msrs_root, name)
        gt = cv2.imread(str(msrs_root / f"train/segmentation/{name}.png"), cv2.IMREAD_GRAYSCALE)
        weak = gt.copy()
        weak[: gt.shape[0] // 2] = 0  # the model misses the upper half
        masks = {"fused": encode_mask_png(weak)}
        manifest = build_manifest(
            device_id="pole-1", captured_at={"visible": 1_764_100_000.0 + i, "thermal": 1_764_100_000.0 + i},
            model_version="seg-v1", model_hash="cd" * 32, task="segment", score=0.95 - 0.01 * i,
            image_size=(640, 480), class_names=seg_names, files=files, predictions={}, masks=masks)
        body, ctype = multipart([("manifest", json.dumps(manifest).encode(), "m.json"),
                                 *[(p, files[p], p) for p in FILE_PARTS],
                                 (MASK_PARTS["fused"], masks["fused"], "fused.png")])
        r = requests.post(f"{world.server.url}/api/v1/uploads", data=body, timeout=60,
                          headers={"Content-Type": ctype, "Authorization": f"Bearer {world.tokens['pole-1']}"})
        assert r.status_code == 201, r.text
        truth[manifest["upload_id"]] = gt
    batch = world.post("/api/v1/batches", json={"k": 2, "hamming": -1, "filters": {"model_version": "seg-v1"}}).json()
    assert set(batch["upload_ids"]) == set(truth)
    rc, out, err = world.cli(capsys, "push", batch=batch["batch_id"])
    assert rc == 0 and "2 tasks added" in out, err
    project = int(out.split("project ", 1)[1].split(":")[0])
    assert project != world.project
    tasks = world.ls_tasks(project)
    for t in tasks:
        kinds = {r["type"] for r in world.predictions(t["id"])[0]["result"]}
        assert kinds == {"polygonlabels"}
    # the labeller paints each class of the truth with the brush on the visible image
    for t in tasks:
        gt = truth[t["data"]["upload_id"]]
        result = [{"id": f"b{c}", "type": "brushlabels", "from_name": "brush_visible", "to_name": "visible",
                   "original_width": 640, "original_height": 480, "image_rotation": 0,
                   "value": {"format": "rle", "rle": mf.brush_from_region(gt == c), "brushlabels": [seg_names[c]]}}
                  for c in np.unique(gt) if c]
        r = world.ls.api("POST", f"/api/tasks/{t['id']}/annotations/", {"result": result})
        assert r.status_code == 201, r.text
    rc, out, err = world.cli(capsys, "pull", batch=batch["batch_id"])
    assert rc == 0 and "2 pairs labelled" in out, err
    for uid, gt in truth.items():
        r = world.get(f"/api/v1/pairs/{uid}/labels/visible/mask")
        assert r.status_code == 200, r.text
        got = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(got, gt)  # brushes are exact


def test_train_a_few_steps_on_the_pulled_set(world, tmp_path, capsys, msrs_root, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "pulled"
    assert msmine_main(["pull", "--server", world.server.url, "--token", world.tokens["team"], "--labelled",
                        "--task", "detect", "--out", str(out)]) == 0, capsys.readouterr().err
    ids = sorted({uid for uid, _ in world.expected})
    assert sorted(p.stem for p in (out / "train" / "visible").glob("*.png")) == ids
    visible = (out / "train" / "labels" / "visible" / f"{world.ids[1]}.txt").read_text().split()
    assert int(visible[0]) == CLASS_NAMES.index("car")
    capsys.readouterr()
    run = tmp_path / "run"
    rc = msmine_main(["train", "--data", str(out), "--task", "detect", "--out", str(run), "--device", "cpu",
                      "--val-data", str(msrs_root), "--set", "data.val_limit=2", "--set", "max_steps=2",
                      "--set", "batch_size=2", "--set", "model.input_size=[64,96]"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["train_pairs"] == len(ids)


def test_signed_image_urls_expire_and_push_renews_them(world, capsys):
    """A task whose image URLs are about to expire gets fresh ones on the next push."""
    tasks = world.ls_tasks()
    t = tasks[3]
    stale = {**t["data"]}
    for image in ("visible", "thermal"):
        parts = urllib.parse.urlsplit(stale[image])
        query = dict(urllib.parse.parse_qsl(parts.query))
        query["exp"] = str(int(time.time()) + 60)  # (the signature no longer matches either)
        stale[image] = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    assert world.ls.api("PATCH", f"/api/tasks/{t['id']}/", {"data": stale}).status_code == 200
    assert requests.get(stale["visible"], timeout=30).status_code == 403  # tampered: refused
    rc, out, err = world.cli(capsys, "push")
    assert rc == 0 and "1 given fresh image URLs" in out and "0 tasks added" in out, err
    fresh = next(x for x in world.ls_tasks() if x["id"] == t["id"])["data"]
    assert fresh["upload_id"] == t["data"]["upload_id"]
    assert requests.get(fresh["visible"], timeout=30).status_code == 200
