"""Client side of ``msmine pull``: download labelled pairs into the MSRS layout ``msmine train`` reads.

    DIR/classes.txt
    DIR/<split>/visible/<upload_id>.png          RGB as uploaded, re-encoded losslessly as PNG
    DIR/<split>/infrared/<upload_id>.png         single-channel 8-bit thermal
    DIR/<split>/labels/{visible,infrared,fusion}/<upload_id>.txt   YOLO "class cx cy w h"   (detection)
    DIR/segmentation_classes.txt + DIR/<split>/segmentation/<upload_id>.png   class ids    (segmentation)

A modality without its own labels takes the fusion set, else the other modality's set (one set
imported for "all" is used for all three). Class ids are remapped to the merged ``classes.txt``.

Segmentation pairs (``task`` "segment") get ``segmentation/<id>.png`` from their imported mask label
(the fusion mask, else the visible, else the infrared one; :mod:`msmine.masks` PNGs), class ids
remapped by name to the merged ``segmentation_classes.txt``. One pull writes one task: the labelled
pairs of the other task are left out when ``task`` is given, and a server holding labelled pairs of
both tasks needs it (a dataset with masks for some pairs only is not one ``msmine train`` reads).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from msmine.client import PairFilter, ServerClient
from msmine.errors import UserError
from msmine.layout import CLASSES_FILE, SEGMENTATION_CLASSES_FILE, parse_class_names
from msmine.masks import decode_mask_png, encode_mask_png
from msmine.server.records import MODALITIES

log = logging.getLogger(__name__)

PAGE = 500
FALLBACK = {"visible": ("fusion", "infrared"), "infrared": ("fusion", "visible"), "fusion": ("visible", "infrared")}
MASK_ORDER = ("fusion", "visible", "infrared")  # which imported mask becomes segmentation/<id>.png


@dataclass
class PullResult:
    pairs: int  # pairs written
    classes: list[str]  # merged class names (classes.txt, or segmentation_classes.txt for segmentation)
    out: Path  # dataset root
    task: str = "detect"  # what was written: "detect" (labels/) or "segment" (segmentation/)
    masks: int = 0  # segmentation/<id>.png written
    skipped: list[str] = field(default_factory=list)  # labelled pairs left out, with the reason


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


def _merge(classes: list[str], names: list[str]) -> list[int]:
    """Append the names ``classes`` lacks; the index of each of ``names`` in the merged list."""
    for name in names:
        if name not in classes:
            classes.append(name)
    return [classes.index(name) for name in names]


def _write_mask(path: Path, data: bytes, size: tuple[int, int], remap: list[int]) -> None:
    """A class-id PNG from the server, checked (size, ids within the pair's classes), ids remapped."""
    try:
        mask = decode_mask_png(data, expected_size=size, num_classes=len(remap))
    except UserError as exc:
        raise UserError(f"server sent a bad mask for {path.stem}: {exc}") from None
    lut = np.zeros(256, np.uint8)
    lut[: len(remap)] = remap
    tmp = path.with_suffix(".tmp.png")
    tmp.write_bytes(encode_mask_png(lut[mask]))
    tmp.replace(path)


def _task_of(summaries: list, task: str | None) -> str:
    tasks = sorted({s.task for s in summaries})
    if task is not None:
        return task
    if len(tasks) > 1:
        counts = ", ".join(f"{sum(s.task == t for s in summaries)} {t}" for t in tasks)
        raise UserError(f"the server holds labelled pairs of both tasks ({counts}): pass --task detect or "
                        "--task segment (one dataset per task)")
    return tasks[0] if tasks else "detect"


def pull_labelled(url: str, token: str, out: Path, split: str = "train", timeout: float = 60.0,
                  task: str | None = None) -> PullResult:
    """Write the labelled pairs of one task into the MSRS layout under ``out`` (see the module doc)."""
    client = ServerClient(url, token, timeout=timeout)
    summaries = list(client.iter_pairs(PairFilter(labelled=True), page_size=PAGE))
    task = _task_of(summaries, task)
    ids = [s.upload_id for s in summaries if s.task == task]
    other = len(summaries) - len(ids)
    out = Path(out)
    folders = ("visible", "infrared", *((f"labels/{m}" for m in MODALITIES) if task == "detect" else ("segmentation",)))
    try:
        for d in folders:
            (out / split / d).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create dataset folders under {out}: {exc}") from None
    classes_path = out / (CLASSES_FILE if task == "detect" else SEGMENTATION_CLASSES_FILE)
    classes: list[str] = parse_class_names(classes_path.read_text()) if classes_path.is_file() else []
    written, masks, skipped = 0, 0, []
    for uid in ids:
        pair = client.get_pair(uid)
        if task == "segment":
            label_masks = pair.raw.get("label_masks") or {}
            modality = next((m for m in MASK_ORDER if m in label_masks), None)
            if modality is None:
                skipped.append(f"{uid}: labelled, but no imported mask")
                continue
            remap = _merge(classes, pair.class_names)
            _write_mask(out / split / "segmentation" / f"{uid}.png", client.label_mask(uid, modality),
                        tuple(pair.summary.image_size), remap)
            masks += 1
        else:
            remap = _merge(classes, pair.class_names)
            for modality, boxes in resolve_modalities(pair.labels).items():
                (out / split / "labels" / modality / f"{uid}.txt").write_text(_yolo_text(boxes, remap))
        _write_png(out / split / "visible" / f"{uid}.png", client.pair_file(uid, "visible"), gray=False)
        _write_png(out / split / "infrared" / f"{uid}.png", client.pair_file(uid, "thermal"), gray=True)
        written += 1
    classes_path.write_text("".join(f"{i} {n}\n" for i, n in enumerate(classes)))
    if other:
        skipped.append(f"{other} labelled pair(s) of the other task")
    for reason in skipped:
        log.warning("pull: left out %s", reason)
    log.info("pulled %d labelled %s pairs into %s", written, task, out)
    return PullResult(pairs=written, classes=classes, out=out, task=task, masks=masks, skipped=skipped)
