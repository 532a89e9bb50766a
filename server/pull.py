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

from msmine.client import PairFilter, ServerClient
from msmine.errors import UserError
from msmine.server.label_import import parse_class_names
from msmine.server.records import MODALITIES

log = logging.getLogger(__name__)

PAGE = 500
FALLBACK = {"visible": ("fusion", "infrared"), "infrared": ("fusion", "visible"), "fusion": ("visible", "infrared")}


@dataclass
class PullResult:
    pairs: int  # pairs written
    classes: list[str]  # merged class names (classes.txt)
    out: Path  # dataset root


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


def pull_labelled(url: str, token: str, out: Path, split: str = "train", timeout: float = 60.0) -> PullResult:
    client = ServerClient(url, token, timeout=timeout)
    ids = [item.upload_id for item in client.iter_pairs(PairFilter(labelled=True), page_size=PAGE)]
    out = Path(out)
    try:
        for d in ("visible", "infrared", *(f"labels/{m}" for m in MODALITIES)):
            (out / split / d).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create dataset folders under {out}: {exc}") from None
    classes_path = out / "classes.txt"
    classes: list[str] = parse_class_names(classes_path.read_text()) if classes_path.is_file() else []
    for uid in ids:
        pair = client.get_pair(uid)
        remap = []
        for name in pair.class_names:
            if name not in classes:
                classes.append(name)
            remap.append(classes.index(name))
        _write_png(out / split / "visible" / f"{uid}.png", client.pair_file(uid, "visible"), gray=False)
        _write_png(out / split / "infrared" / f"{uid}.png", client.pair_file(uid, "thermal"), gray=True)
        for modality, boxes in resolve_modalities(pair.labels).items():
            (out / split / "labels" / modality / f"{uid}.txt").write_text(_yolo_text(boxes, remap))
    classes_path.write_text("".join(f"{i} {n}\n" for i, n in enumerate(classes)))
    log.info("pulled %d labelled pairs into %s", len(ids), out)
    return PullResult(pairs=len(ids), classes=classes, out=out)
