"""The data team's web page in real headless Debian chromium (Playwright): gallery sorted by score,
images loaded, detections drawn, filter and paging work. Screenshot: artifacts/screenshots/."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

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
            page.wait_for_function("document.getElementById('login-error').textContent.includes('refused')")

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
            page.wait_for_function("document.getElementById('batch-status').textContent.includes('exported')")
            assert errors == []
        finally:
            browser.close()
    assert (SCREENSHOTS / "server_gallery.png").stat().st_size > 10_000
