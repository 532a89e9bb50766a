"""A report a person would rather look at than read: `report.html`.

The top mined pairs as in the seed paper's Fig. 5 (visible image with the visible branch's
detections, thermal image with the thermal branch's, the inconsistency heat map with the fused
branch's), a table of figures, and optional learning curves (a PNG). One self-contained HTML file
(images embedded), so it can be mailed or opened from a CI artifact.

The drawing and page pieces (:func:`fig5_panels`, :func:`panel_row`, :func:`html_page`, ...) are
shared with ``bench/mining_picks_report.py`` (the mining experiment's picks in the same panels).
"""

from __future__ import annotations

import base64
import html
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from msmine.client import ServerClient
from msmine.palette import BRANCH_COLOURS as BRANCH_HEX
from msmine.palette import MASK_ALPHA, branch_bgr, class_colour, hex_to_bgr, is_background
from msmine.wire import FILE_PARTS

log = logging.getLogger(__name__)

BRANCH_COLOURS = {b: branch_bgr(b) for b in BRANCH_HEX}  # BGR, from the colour table the gallery shares


@dataclass
class MinedPair:
    upload_id: str
    device_id: str
    score: float
    images: dict[str, np.ndarray]  # visible / thermal / heatmap, BGR
    predictions: dict[str, list[dict]]
    class_names: list[str]
    labelled: bool = False
    extra: dict = field(default_factory=dict)


def fetch_top_pairs(server: str, token: str, k: int) -> list[MinedPair]:
    """The ``k`` highest-scoring pairs on the server, with their images and predictions."""
    client = ServerClient(server, token, timeout=60.0)
    pairs = []
    for item in client.iter_pairs(page_size=max(1, min(k, 500)), max_items=max(k, 0)):
        detail = client.get_pair(item.upload_id)
        images = {}
        for part in FILE_PARTS:
            raw = client.pair_file(item.upload_id, part)
            img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                log.warning("pair %s: %s image does not decode", item.upload_id, part)
                img = np.zeros((48, 64, 3), np.uint8)
            images[part] = img
        pairs.append(MinedPair(item.upload_id, item.device_id, item.score, images, detail.predictions,
                               detail.class_names, item.labelled))
    return pairs


def draw_detections(image: np.ndarray, detections: list[dict], class_names: list[str],
                    colour: tuple[int, int, int], min_score: float = 0.3, labels: bool = True) -> np.ndarray:
    """``image`` (BGR) with the ``detections`` (wire format, boxes normalised to it) scoring at least
    ``min_score`` drawn in ``colour``; ``labels``: with class name and score (off for small panels)."""
    out = image.copy()
    h, w = out.shape[:2]
    for det in detections:
        if det["score"] < min_score:
            continue
        x1, y1, x2, y2 = det["box"]
        p1 = (int(x1 * w), int(y1 * h))
        p2 = (int(x2 * w), int(y2 * h))
        cv2.rectangle(out, p1, p2, colour, 2)
        if not labels:
            continue
        cid = det["class_id"]
        name = class_names[cid] if 0 <= cid < len(class_names) else str(cid)
        cv2.putText(out, f"{name} {det['score']:.2f}", (p1[0], max(p1[1] - 4, 10)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return out


def draw_mask(image: np.ndarray, mask: np.ndarray, class_names: list[str], outline: bool = False,
              alpha: float = MASK_ALPHA) -> np.ndarray:
    """``image`` (BGR) with the class-id ``mask`` (same height and width) painted in the palette's
    class colours, a background class left clear; ``outline``: only each class region's contour
    (for the heat map, whose colours a fill would hide)."""
    out = image.copy()
    mask = np.asarray(mask)
    for cid in np.unique(mask):
        if is_background(int(cid), class_names):
            continue
        region = (mask == cid).astype(np.uint8)
        colour = hex_to_bgr(class_colour(int(cid)))
        if outline:
            contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, colour, 1, cv2.LINE_AA)
        else:
            sel = region.astype(bool)
            out[sel] = (out[sel] * (1.0 - alpha) + np.array(colour, np.float64) * alpha).astype(np.uint8)
    return out


PANELS = (("visible", "visible", "visible + visible branch"), ("thermal", "thermal", "thermal + thermal branch"),
          ("heatmap", "fused", "inconsistency map + fused branch"))  # (image, branch drawn on it, caption)


def fig5_panels(images: dict[str, np.ndarray], predictions: dict[str, list[dict]], class_names: list[str],
                masks: dict[str, np.ndarray] | None = None, min_score: float = 0.3,
                labels: bool = True) -> list[tuple[np.ndarray, str]]:
    """The seed paper's Fig. 5 for one pair: (image, caption) for the visible image with the visible
    branch's detections, the thermal image with the thermal branch's, and the inconsistency heat map
    with the fused branch's. ``masks`` (branch -> class ids at the image size, segmentation) are
    drawn too: filled on the two images, as outlines on the heat map. ``labels``: as
    :func:`draw_detections`."""
    masks = masks or {}
    panels = []
    for part, branch, caption in PANELS:
        image = images[part]
        if branch in masks:
            image = draw_mask(image, masks[branch], class_names, outline=part == "heatmap")
        panels.append((draw_detections(image, predictions.get(branch, []), class_names, BRANCH_COLOURS[branch],
                                       min_score, labels), caption))
    return panels


def _img_tag(image: np.ndarray, max_width: int = 320) -> str:
    h, w = image.shape[:2]
    if w > max_width:
        image = cv2.resize(image, (max_width, round(h * max_width / w)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        return ""
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(buf.tobytes()).decode()}">'


def panel_row(caption: str, panels: list[tuple[np.ndarray, str]]) -> str:
    """One pair's panels as an HTML block (``caption`` is HTML, the panels' captions plain text)."""
    figures = "".join(f"<figure>{_img_tag(image)}<figcaption>{html.escape(text)}</figcaption></figure>"
                      for image, text in panels)
    return f'<div class="pair"><div class="cap">{caption}</div><div class="row">{figures}</div></div>'


def _pair_row(rank: int, pair: MinedPair) -> str:
    caption = (f"#{rank} &middot; score {pair.score:.4f} bits &middot; device {html.escape(pair.device_id)}"
               f" &middot; <code>{pair.upload_id[:12]}</code>")
    return panel_row(caption, fig5_panels(pair.images, pair.predictions, pair.class_names))


STYLE = """body { font-family: system-ui, sans-serif; margin: 2em; background: #111; color: #eee; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { text-align: left; padding: 0.2em 1em 0.2em 0; }
th { color: #aaa; font-weight: normal; }
.pair { margin: 1em 0 2em; }
.row { display: flex; gap: 0.5em; flex-wrap: wrap; }
figure { margin: 0; } figcaption { font-size: 0.8em; color: #aaa; }
.cap { margin-bottom: 0.3em; } .curves { max-width: 100%; background: #fff; }
code { color: #9cf; }
"""


def branch_legend(what: str = "Boxes") -> str:
    """``what``: the three branches' names in their colours (HTML)."""
    return (f"{what}: <span style=\"color:{BRANCH_HEX['visible']}\">visible branch</span>,\n"
            f"<span style=\"color:{BRANCH_HEX['thermal']}\">thermal branch</span>,\n"
            f"<span style=\"color:{BRANCH_HEX['fused']}\">fused branch</span>.")


def html_page(title: str, body: str, style: str = "") -> str:
    """A self-contained page in the reports' dark style (``body``: HTML)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
{STYLE}{style}</style></head><body>
{body}
</body></html>
"""


def facts_table(facts: dict[str, object]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    return f"<table>{rows}</table>"


def write_report(path: Path, title: str, facts: dict[str, object], pairs: list[MinedPair],
                 curves_png: Path | None = None, notes: str = "") -> Path:
    curves = ""
    if curves_png is not None and Path(curves_png).is_file():
        data = base64.b64encode(Path(curves_png).read_bytes()).decode()
        curves = f'<h2>Learning curves</h2><img class="curves" src="data:image/png;base64,{data}">'
    mined = "".join(_pair_row(i, p) for i, p in enumerate(pairs, start=1))
    if not pairs:
        mined = "<p>No pair was uploaded.</p>"
    body = f"""<h1>{html.escape(title)}</h1>
{facts_table(facts)}
{notes}
{curves}
<h2>Top mined pairs (highest cross-modality inconsistency first)</h2>
<p>{branch_legend()} Where the visible and thermal branches disagree, at least one modality is wrong:
that is what makes the pair worth labelling.</p>
{mined}"""
    doc = html_page(title, body)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
    return path
