"""KAIST-style pairs with per-image annotation text files in Piotr Dollar's 'bbGt' format.

    root/<split>/visible/<id>.<jpg|png>          RGB
    root/<split>/lwir/<id>.<jpg|png>             thermal
    root/<split>/annotations/<id>.txt            one box set -> every branch
    root/<split>/annotations/visible/<id>.txt    optional paired annotations: visible branch
    root/<split>/annotations/lwir/<id>.txt       optional paired annotations: thermal branch

With paired folders the fused branch reads annotations/<id>.txt when present, else the lwir set.
The split folder may be left out (root/visible, root/lwir, root/annotations). Only the `person` label is
kept (class 0); `people`, `cyclist`, `person?` are dropped. A bbGt line is
`label x y w h [occ xv yv wv hv ign ang]` with x y w h in pixels; lines starting with % are comments.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np

from msmine.errors import UserError
from train.data.dataset import PairDataset, PairRecord
from train.data.layout import pair_images, require_files, split_root
from train.data.sample import clip_and_filter, empty_boxes

log = logging.getLogger(__name__)

KAIST_CLASSES = ["person"]
# KAIST sets 00-02 and 06-08 are day, 03-05 and 09-11 night
_SET_RE = re.compile(r"set(\d\d)")
_NIGHT_SETS = {3, 4, 5, 9, 10, 11}


def day_night_from_kaist_id(pair_id: str) -> bool | None:
    match = _SET_RE.search(pair_id)
    if match is None:
        return None
    return int(match.group(1)) in _NIGHT_SETS


def parse_bbgt(path: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """`person` boxes (x1 y1 x2 y2 pixels, clipped) from one bbGt file; malformed line -> UserError."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"missing annotation file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read annotation file {path}: {exc}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("%"):
            continue
        fields = stripped.split()
        if len(fields) < 5:
            raise UserError(f"{path}, line {number}: expected 'label x y w h ...', got {stripped!r}")
        try:
            x, y, w, h = (float(f) for f in fields[1:5])
        except ValueError:
            raise UserError(f"{path}, line {number}: non-numeric box in {stripped!r}") from None
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise UserError(f"{path}, line {number}: non-finite box in {stripped!r}")
        if fields[0] == "person":
            rows.append([x, y, x + w, y + h])
    if not rows:
        return empty_boxes()
    return clip_and_filter(np.array(rows, np.float32), np.zeros(len(rows), np.int64), size[1], size[0])


class KaistReader:
    def __init__(self, sources: dict[str, Path]) -> None:
        self.sources = sources  # branch -> annotation folder

    def read_boxes(self, record: PairRecord, size: tuple[int, int]):
        boxes, labels = {}, {}
        for branch, folder in self.sources.items():
            boxes[branch], labels[branch] = parse_bbgt(folder / f"{record.id}.txt", size)
        return boxes, labels


def looks_like_kaist(root: Path, split: str) -> bool:
    base = root / split if (root / split).is_dir() else root
    return (base / "visible").is_dir() and (base / "lwir").is_dir()


def open_kaist(root: Path, split: str) -> PairDataset:
    base = split_root(root, split, ("visible", "lwir"))
    pairs = pair_images(base / "visible", base / "lwir")
    ids = [pair_id for pair_id, _, _ in pairs]
    annotations = base / "annotations"
    if not annotations.is_dir():
        raise UserError(f"KAIST layout: missing annotation folder {annotations}")
    paired = (annotations / "visible").is_dir() and (annotations / "lwir").is_dir()
    if paired:
        has_joint = any(p.suffix == ".txt" for p in annotations.iterdir())
        sources = {
            "visible": annotations / "visible",
            "thermal": annotations / "lwir",
            "fused": annotations if has_joint else annotations / "lwir",
        }
    else:
        sources = {"visible": annotations, "thermal": annotations, "fused": annotations}
    for folder in set(sources.values()):
        require_files(folder, ids, ".txt", "annotation file")
    records = [
        PairRecord(id=pair_id, visible=v, thermal=t, is_night=day_night_from_kaist_id(pair_id))
        for pair_id, v, t in pairs
    ]
    log.info("KAIST %s: %d pairs from %s (paired annotations: %s)", split, len(records), base, paired)
    return PairDataset(records, KaistReader(sources), list(KAIST_CLASSES), None, root=root, fmt="kaist")
