"""A report a person would rather look at than read: `report.html`.

The top mined pairs as in the seed paper's Fig. 5 (visible image with the visible branch's
detections, thermal image with the thermal branch's, the inconsistency heat map with the fused
branch's), a table of figures, and optional learning curves (a PNG). One self-contained HTML file
(images embedded), so it can be mailed or opened from a CI artifact.
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
from msmine.palette import branch_bgr
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
                    colour: tuple[int, int, int], min_score: float = 0.3) -> np.ndarray:
    out = image.copy()
    h, w = out.shape[:2]
    for det in detections:
        if det["score"] < min_score:
            continue
        x1, y1, x2, y2 = det["box"]
        p1 = (int(x1 * w), int(y1 * h))
        p2 = (int(x2 * w), int(y2 * h))
        cv2.rectangle(out, p1, p2, colour, 2)
        cid = det["class_id"]
        name = class_names[cid] if 0 <= cid < len(class_names) else str(cid)
        cv2.putText(out, f"{name} {det['score']:.2f}", (p1[0], max(p1[1] - 4, 10)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return out


def _img_tag(image: np.ndarray, max_width: int = 320) -> str:
    h, w = image.shape[:2]
    if w > max_width:
        image = cv2.resize(image, (max_width, round(h * max_width / w)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        return ""
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(buf.tobytes()).decode()}">'


def _pair_row(rank: int, pair: MinedPair) -> str:
    vis = draw_detections(pair.images["visible"], pair.predictions.get("visible", []), pair.class_names,
                          BRANCH_COLOURS["visible"])
    th = draw_detections(pair.images["thermal"], pair.predictions.get("thermal", []), pair.class_names,
                         BRANCH_COLOURS["thermal"])
    heat = draw_detections(pair.images["heatmap"], pair.predictions.get("fused", []), pair.class_names,
                           BRANCH_COLOURS["fused"])
    caption = (f"#{rank} &middot; score {pair.score:.4f} bits &middot; device {html.escape(pair.device_id)}"
               f" &middot; <code>{pair.upload_id[:12]}</code>")
    return (f'<div class="pair"><div class="cap">{caption}</div>'
            f'<div class="row"><figure>{_img_tag(vis)}<figcaption>visible + visible branch</figcaption></figure>'
            f'<figure>{_img_tag(th)}<figcaption>thermal + thermal branch</figcaption></figure>'
            f'<figure>{_img_tag(heat)}<figcaption>inconsistency map + fused branch</figcaption></figure>'
            f"</div></div>")


def write_report(path: Path, title: str, facts: dict[str, object], pairs: list[MinedPair],
                 curves_png: Path | None = None, notes: str = "") -> Path:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    curves = ""
    if curves_png is not None and Path(curves_png).is_file():
        data = base64.b64encode(Path(curves_png).read_bytes()).decode()
        curves = f'<h2>Learning curves</h2><img class="curves" src="data:image/png;base64,{data}">'
    mined = "".join(_pair_row(i, p) for i, p in enumerate(pairs, start=1))
    if not pairs:
        mined = "<p>No pair was uploaded.</p>"
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; background: #111; color: #eee; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ text-align: left; padding: 0.2em 1em 0.2em 0; }}
th {{ color: #aaa; font-weight: normal; }}
.pair {{ margin: 1em 0 2em; }}
.row {{ display: flex; gap: 0.5em; flex-wrap: wrap; }}
figure {{ margin: 0; }} figcaption {{ font-size: 0.8em; color: #aaa; }}
.cap {{ margin-bottom: 0.3em; }} .curves {{ max-width: 100%; background: #fff; }}
code {{ color: #9cf; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{rows}</table>
{notes}
{curves}
<h2>Top mined pairs (highest cross-modality inconsistency first)</h2>
<p>Boxes: <span style="color:{BRANCH_HEX['visible']}">visible branch</span>,
<span style="color:{BRANCH_HEX['thermal']}">thermal branch</span>,
<span style="color:{BRANCH_HEX['fused']}">fused branch</span>. Where the visible and thermal branches disagree, at least one modality is wrong:
that is what makes the pair worth labelling.</p>
{mined}
</body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
    return path
