"""Client side of ``msmine pull``: download labelled pairs into the MSRS layout ``msmine train`` reads.

    DIR/classes.txt
    DIR/<split>/visible/<upload_id>.png          RGB as uploaded, re-encoded losslessly as PNG
    DIR/<split>/infrared/<upload_id>.png         single-channel 8-bit thermal
    DIR/<split>/labels/{visible,infrared,fusion}/<upload_id>.txt   YOLO "class cx cy w h"

A modality without its own labels takes the fusion set, else the other modality's set (one set
imported for "all" is used for all three). Class ids are remapped to the merged ``classes.txt``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from msmine.errors import UserError
from msmine.server.label_import import parse_class_names
from msmine.server.records import MODALITIES
from msmine.wire import API_PREFIX

log = logging.getLogger(__name__)

PAGE = 500
FALLBACK = {"visible": ("fusion", "infrared"), "infrared": ("fusion", "visible"), "fusion": ("visible", "infrared")}


@dataclass
class PullResult:
    pairs: int  # pairs written
    classes: list[str]  # merged class names (classes.txt)
    out: Path  # dataset root


class ServerClient:
    """Thin wrapper over requests with bearer auth and one-line errors."""

    def __init__(self, url: str, token: str, timeout: float = 60.0) -> None:
        import requests

        self._requests = requests
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def get(self, path: str, **params):
        try:
            resp = self.session.get(self.url + path, params=params or None, timeout=self.timeout)
        except self._requests.RequestException as exc:
            raise UserError(f"cannot reach server {self.url}: {exc}") from None
        if resp.status_code != 200:
            try:
                detail = resp.json().get("detail")
            except ValueError:
                detail = resp.text[:200]
            raise UserError(f"GET {path} -> HTTP {resp.status_code}: {detail}")
        return resp


def resolve_modalities(labels: dict[str, list]) -> dict[str, list]:
    out = {}
    for m in MODALITIES:
        if m in labels:
            out[m] = labels[m]
            continue
        for alt in FALLBACK[m]:
            if alt in labels:
                out[m] = labels[alt]
                break
    return out


def _write_png(path: Path, data: bytes, gray: bool) -> None:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"server sent an image that cannot be decoded for {path.name}")
    tmp = path.with_suffix(".tmp.png")
    if not cv2.imwrite(str(tmp), img):
        raise UserError(f"cannot write {tmp}")
    tmp.replace(path)


def _yolo_text(boxes: list, remap: list[int]) -> str:
    return "".join(f"{remap[int(c)]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for c, cx, cy, w, h in boxes)


def pull_labelled(url: str, token: str, out: Path, split: str = "train") -> PullResult:
    client = ServerClient(url, token)
    ids: list[str] = []
    offset = 0
    while True:
        page = client.get(f"{API_PREFIX}/pairs", labelled="true", limit=PAGE, offset=offset).json()
        ids += [item["upload_id"] for item in page["items"]]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            break
    out = Path(out)
    try:
        for d in ("visible", "infrared", *(f"labels/{m}" for m in MODALITIES)):
            (out / split / d).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create dataset folders under {out}: {exc}") from None
    classes_path = out / "classes.txt"
    classes: list[str] = parse_class_names(classes_path.read_text()) if classes_path.is_file() else []
    for uid in ids:
        pair = client.get(f"{API_PREFIX}/pairs/{uid}").json()
        remap = []
        for name in pair["class_names"]:
            if name not in classes:
                classes.append(name)
            remap.append(classes.index(name))
        _write_png(out / split / "visible" / f"{uid}.png",
                   client.get(f"{API_PREFIX}/pairs/{uid}/files/visible").content, gray=False)
        _write_png(out / split / "infrared" / f"{uid}.png",
                   client.get(f"{API_PREFIX}/pairs/{uid}/files/thermal").content, gray=True)
        for modality, boxes in resolve_modalities(pair["labels"]).items():
            (out / split / "labels" / modality / f"{uid}.txt").write_text(_yolo_text(boxes, remap))
    classes_path.write_text("".join(f"{i} {n}\n" for i, n in enumerate(classes)))
    log.info("pulled %d labelled pairs into %s", len(ids), out)
    return PullResult(pairs=len(ids), classes=classes, out=out)
