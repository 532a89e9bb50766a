"""loop/report.py's drawing pieces, shared with bench/mining_picks_report.py: the Fig. 5 panels
(boxes per branch, class masks) and the self-contained page."""

from __future__ import annotations

import base64
import re

import cv2
import numpy as np

from msmine.loop.report import MinedPair, draw_mask, fig5_panels, write_report
from msmine.palette import branch_bgr, class_colour, hex_to_bgr

CLASSES = ["unlabelled", "car", "person"]


def _images(value: int = 40) -> dict[str, np.ndarray]:
    return {p: np.full((60, 80, 3), value, np.uint8) for p in ("visible", "thermal", "heatmap")}


def test_each_panel_draws_its_own_branch():
    predictions = {b: [{"box": [0.1, 0.1, 0.5, 0.5], "score": 0.9, "class_id": 1}] for b in ("visible", "fused")}
    predictions["thermal"] = [{"box": [0.1, 0.1, 0.5, 0.5], "score": 0.2, "class_id": 1}]  # below min_score
    panels = fig5_panels(_images(), predictions, CLASSES, labels=False)
    assert [c for _, c in panels] == ["visible + visible branch", "thermal + thermal branch",
                                      "inconsistency map + fused branch"]
    (vis, _), (th, _), (heat, _) = panels
    assert tuple(vis[6, 20]) == branch_bgr("visible") and tuple(heat[6, 20]) == branch_bgr("fused")
    assert (th == 40).all()  # the thermal detection is under the floor: nothing drawn


def test_masks_fill_the_images_and_outline_the_heat_map():
    mask = np.zeros((60, 80), np.uint8)
    mask[10:40, 20:60] = 2
    image = np.full((60, 80, 3), 100, np.uint8)
    filled = draw_mask(image, mask, CLASSES)
    assert (filled[mask == 0] == 100).all()  # the background class stays clear
    expected = (np.array([100.0] * 3) * 0.55 + np.array(hex_to_bgr(class_colour(2)), float) * 0.45).astype(np.uint8)
    assert (filled[25, 40] == expected).all()
    outlined = draw_mask(image, mask, CLASSES, outline=True)
    assert (outlined[25, 40] == 100).all() and (outlined[10, 40] != 100).any()
    panels = fig5_panels(_images(100), {}, CLASSES, {"visible": mask, "thermal": mask, "fused": mask})
    assert (panels[0][0][25, 40] == expected).all() and (panels[2][0][25, 40] == 100).all()


def test_write_report_one_block_per_pair_with_decodable_images(tmp_path):
    pairs = [MinedPair(f"id{i:014d}", "dev<1>", 0.5 - i / 10, _images(), {}, CLASSES) for i in range(3)]
    page = write_report(tmp_path / "r.html", "t <x>", {"k": "v&"}, pairs).read_text()
    assert page.count('class="pair"') == 3 and "dev&lt;1&gt;" in page and "<title>t &lt;x&gt;</title>" in page
    images = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(images) == 9
    assert all(cv2.imdecode(np.frombuffer(base64.b64decode(b), np.uint8), cv2.IMREAD_COLOR).shape == (60, 80, 3)
               for b in images)
    assert "No pair was uploaded" in write_report(tmp_path / "e.html", "t", {}, []).read_text()
