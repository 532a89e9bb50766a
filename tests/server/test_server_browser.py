"""The data team's web page in real headless Debian chromium (Playwright): gallery sorted by score,
images loaded, detections drawn, filter and paging work. Screenshot: artifacts/screenshots/."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.server.live_server import REPO_ROOT, LiveServer, make_tokens
from tests.server.upload_helpers import (
    manifest_bytes,
    manifest_for,
    msrs_files,
    msrs_predictions,
    upload_body,
)

pytestmark = pytest.mark.timeout(180)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
NAMES = ["00001D", "00002D", "00003N", "00005N", "00006N", "00007N", "00009N", "00010N", "00011N", "00013N",
         "00014N", "00015N", "00016N", "00017N"]


def chromium_or_skip() -> str:
    if Path(CHROMIUM).exists() and shutil.which("chromium") is not None:
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is required in CI (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def gallery_server(tmp_path_factory, msrs_root):
    root = tmp_path_factory.mktemp("browser") / "srv"
    tokens = make_tokens(root, ("pole-1", "pole-2"))
    server = LiveServer(root, ("--rate-limit", "0")).start()
    try:
        names = [n for n in NAMES if (msrs_root / "train/visible" / f"{n}.jpg").exists()][:14]
        for i, name in enumerate(names):
            device = "pole-1" if i % 2 == 0 else "pole-2"
            files = msrs_files(msrs_root, name)
            rank = round(0.05 + 0.9 * ((i * 5) % 14) / 13, 4)
            # every third pair is schema 2: ranked on its selection score, its inconsistency shown beside
            selection = {"policy": "entropy", "score": rank} if i % 3 == 0 else None
            m = manifest_for(files, device_id=device, score=round(1 - rank, 4) if selection else rank,
                             image_size=(640, 480), predictions=msrs_predictions(msrs_root, name),
                             captured_at=1_764_000_000 + 60 * i, selection=selection)
            body, ctype = upload_body(manifest_bytes(m), files)
            resp = requests.post(server.url + "/api/v1/uploads", data=body, timeout=30,
                                 headers={"Content-Type": ctype, "Authorization": f"Bearer {tokens[device]}"})
            assert resp.status_code == 201, resp.text
        yield server, tokens, len(names)
    finally:
        server.stop()


def cards(page) -> list[dict]:
    return page.eval_on_selector_all(".card", """els => els.map(c => ({
        score: parseFloat(c.dataset.score), device: c.dataset.device, policy: c.dataset.policy || null,
        selection: (c.querySelector('.selection') || {}).textContent || null,
        images: [...c.querySelectorAll('img')].map(i => ({loaded: i.dataset.loaded, w: i.naturalWidth})),
        boxes: c.querySelectorAll('rect.det').length}))""")


def wait_ready(page) -> None:
    page.wait_for_selector("#gallery[data-state=ready]", timeout=60_000)


def test_gallery_in_headless_chromium(gallery_server):
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    server, tokens, n = gallery_server
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # the page runs under the server's Content-Security-Policy: nothing it needs may be blocked
            page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
            # without a token the page asks for one and shows no data
            response = page.goto(server.url + "/")
            assert "script-src 'self'" in response.headers["content-security-policy"]
            assert response.headers["x-frame-options"] == "DENY"
            page.wait_for_selector("#login:not([hidden])")
            assert page.locator(".card").count() == 0
            page.fill("#token-input", "msm_wrong")
            page.click("#login-form button")
            # a locator wait, not wait_for_function("..."): the gallery's CSP (script-src 'self') refuses
            # the eval that a string predicate needs whenever it has to poll
            page.locator("#login-error", has_text="refused").wait_for()

            page.goto(server.url + f"/?token={tokens['team']}")
            wait_ready(page)
            assert "token=" not in page.url  # taken out of the address bar, kept in localStorage
            assert page.evaluate("localStorage.getItem('msmine.token')") == tokens["team"]
            page.select_option("#f-limit", "12")
            page.click("#apply")
            wait_ready(page)
            first = cards(page)
            assert len(first) == 12
            scores = [c["score"] for c in first]
            assert scores == sorted(scores, reverse=True)
            assert all(img["loaded"] == "1" and img["w"] > 0 for c in first for img in c["images"])
            assert all(len(c["images"]) == 3 for c in first)
            assert sum(c["boxes"] for c in first) > 0
            selected = [c for c in first if c["policy"]]
            assert selected and all(c["policy"] == "entropy" and "inconsistency" in c["selection"] for c in selected)
            assert page.locator("#page-info").inner_text() == "page 1 / 2"
            assert page.locator("#stats").inner_text() == f"{n} pairs · 0 labelled · 2 devices"
            page.screenshot(path=str(SCREENSHOTS / "server_gallery.png"), full_page=False)

            page.click("#next")
            wait_ready(page)
            second = cards(page)
            assert len(second) == n - 12 and max(c["score"] for c in second) <= min(scores)

            page.select_option("#f-device", "pole-2")
            page.click("#apply")
            wait_ready(page)
            filtered = cards(page)
            assert len(filtered) == n // 2 and {c["device"] for c in filtered} == {"pole-2"}
            assert [c["score"] for c in filtered] == sorted((c["score"] for c in filtered), reverse=True)
            page.fill("#f-min", "0.5")
            page.click("#apply")
            wait_ready(page)
            assert all(c["score"] >= 0.5 and c["device"] == "pole-2" for c in cards(page))
            page.screenshot(path=str(SCREENSHOTS / "server_gallery_filtered.png"))

            # "Export top K" makes a batch with the current filters and downloads its zip
            page.fill("#batch-k", "2")
            with page.expect_download(timeout=60_000) as download_info:
                page.click("#make-batch")
            zip_path = download_info.value.path()
            with zipfile.ZipFile(zip_path) as z:
                assert len([n for n in z.namelist() if n.startswith("images/visible/")]) == 2
                assert "annotations/instances_visible.json" in z.namelist()
            page.locator("#batch-status", has_text="exported").wait_for()
            assert errors == []
        finally:
            browser.close()
    assert (SCREENSHOTS / "server_gallery.png").stat().st_size > 10_000


# ---- segmentation masks, imported labels and the pair detail view (issue 14 item 1, issue 15 item 7) ----

SEG_NAMES = ["00003N", "00006N"]


@pytest.fixture(scope="module")
def mask_server(tmp_path_factory, msrs_root):
    import json

    import cv2

    from msmine.masks import encode_mask_png
    from msmine.server.config import ServerConfig
    from msmine.server.context import open_stores
    from msmine.wire import FILE_PARTS, MASK_PARTS, build_manifest
    from tests.server.upload_helpers import multipart

    root = tmp_path_factory.mktemp("browser-masks") / "srv"
    tokens = make_tokens(root, ("pole-1",))
    server = LiveServer(root, ("--rate-limit", "0")).start(timeout=300)
    classes = [line.split(maxsplit=1)[1] for line in (msrs_root / "segmentation_classes.txt").read_text().splitlines()]
    auth = {"Authorization": f"Bearer {tokens['pole-1']}"}
    try:
        # a detection pair of an older model, with imported boxes
        files = msrs_files(msrs_root, "00001D")
        det = manifest_for(files, image_size=(640, 480), predictions=msrs_predictions(msrs_root, "00001D"),
                           model_version="det-v1", captured_at=1_764_000_000)
        body, ctype = upload_body(manifest_bytes(det), files)
        assert requests.post(server.url + "/api/v1/uploads", data=body, timeout=30,
                             headers={"Content-Type": ctype, **auth}).status_code == 201
        seg = {}
        for i, name in enumerate(SEG_NAMES):
            files = msrs_files(msrs_root, name)
            truth = cv2.imread(str(msrs_root / "train" / "segmentation" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
            blind = np.where(truth == classes.index("person"), 0, truth)  # the visible branch misses people
            masks = {"fused": encode_mask_png(truth), "visible": encode_mask_png(blind),
                     "thermal": encode_mask_png(truth)}
            m = build_manifest(device_id="pole-1", captured_at={"visible": 1_764_000_100 + i, "thermal": 1_764_000_100 + i},
                               model_version="seg-v1", model_hash="cd" * 32, task="segment", score=0.3 - 0.1 * i,
                               image_size=(640, 480), class_names=classes, files=files, predictions={}, masks=masks)
            parts = [("manifest", json.dumps(m).encode(), "m.json"), *[(p, files[p], p) for p in FILE_PARTS],
                     *[(MASK_PARTS[b], d, b) for b, d in masks.items()]]
            body, ctype = multipart(parts)
            r = requests.post(server.url + "/api/v1/uploads", data=body, timeout=30, headers={"Content-Type": ctype, **auth})
            assert r.status_code == 201, r.text
            seg[name] = (m["upload_id"], truth)
        meta, blobs = open_stores(root, ServerConfig())
        try:
            uid, truth = seg[SEG_NAMES[0]]
            meta.set_labels({}, "test", masks={(uid, "fusion"): blobs.put(encode_mask_png(truth))})
            meta.set_labels({(det["upload_id"], "fusion"): [[2, 0.5, 0.5, 0.2, 0.3]]}, "test")
        finally:
            meta.close()
        yield server, tokens, seg, classes
    finally:
        server.stop()


@pytest.mark.timeout(900)  # a loaded machine: the module's server start counts against the first test
def test_gallery_masks_legend_labels_and_detail_view(mask_server):
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    from msmine.palette import BRANCH_COLOURS, class_colour

    server, tokens, seg, classes = mask_server
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    uid, truth = seg[SEG_NAMES[0]]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
            page.goto(server.url + f"/?token={tokens['team']}")
            wait_ready(page)
            assert page.locator("#stats").inner_text() == "3 pairs · 2 labelled · 1 device"
            # ranked within the latest model version by default (its task's scores only)
            assert page.locator("#f-model").input_value() == "seg-v1"
            got = page.eval_on_selector_all(".card", "els => els.map(c => [c.dataset.task, c.dataset.uploadId])")
            assert [t for t, _ in got] == ["segment", "segment"] and got[0][1] == uid
            first = page.locator(f".card[data-upload-id='{uid}']")
            assert first.locator(".panel").count() == 4  # visible, thermal, fused, inconsistency
            loaded = first.locator("canvas.mask").evaluate_all("cs => cs.map(c => [c.className, c.dataset.loaded])")
            assert sorted(loaded) == [["mask mask-fused", "1"], ["mask mask-label", "1"], ["mask mask-label", "1"],
                                      ["mask mask-label", "1"], ["mask mask-thermal", "1"], ["mask mask-visible", "1"]]
            legend = first.locator(".classes .cls").all_inner_texts()
            present = [classes[c] for c in sorted(set(truth.ravel().tolist())) if c != 0]
            assert legend == present  # the class legend names every class in the masks, not the background
            # the legend and the boxes use the shared colour table (msmine.palette)
            sw = page.eval_on_selector(".sw.fused", "e => getComputedStyle(e).backgroundColor")
            assert sw == "rgb({}, {}, {})".format(*(int(BRANCH_COLOURS["fused"][i:i + 2], 16) for i in (1, 3, 5)))
            page.screenshot(path=str(SCREENSHOTS / "server_gallery_masks.png"))

            first.click()  # the detail view
            page.wait_for_selector("#detail[data-state=ready]", timeout=30_000)
            person = classes.index("person")
            ys, xs = np.nonzero(truth == person)
            y, x = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
            pixel = page.eval_on_selector("#detail canvas.mask-fused",
                                          f"c => Array.from(c.getContext('2d').getImageData({x}, {y}, 1, 1).data)")
            expect = [int(class_colour(person)[i:i + 2], 16) for i in (1, 3, 5)]
            # a person pixel painted in the person colour (canvas alpha rounding: within 3 levels)
            assert max(abs(a - b) for a, b in zip(pixel[:3], expect)) <= 3 and pixel[3] > 0
            bg = page.eval_on_selector("#detail canvas.mask-fused",
                                       "c => c.getContext('2d').getImageData(0, 0, 1, 1).data[3]")
            assert truth[0, 0] != 0 or bg == 0  # the background class stays transparent
            assert "person" in page.locator("#detail .classes").inner_text()
            page.screenshot(path=str(SCREENSHOTS / "server_gallery_detail.png"))
            page.uncheck("#t-mask-fused")  # toggles per branch
            assert page.eval_on_selector("#detail canvas.mask-fused", "c => getComputedStyle(c).display") == "none"
            assert page.eval_on_selector("#detail canvas.mask-visible", "c => getComputedStyle(c).display") != "none"
            page.keyboard.press("Escape")
            assert page.locator("#detail").is_hidden()

            # the detection model's pairs: imported label boxes are drawn
            page.select_option("#f-model", "det-v1")
            page.click("#apply")
            wait_ready(page)
            assert page.locator(".card").count() == 1 and page.locator(".card rect.lab").count() >= 2
            assert errors == []
        finally:
            browser.close()
