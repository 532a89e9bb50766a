"""COCO JSON listing image pairs, one file per split. Looked for at, in order:

    root/annotations/<split>.json, root/annotations/instances_<split>.json, root/<split>.json,
    root/<split>/annotations.json

Each image entry has `file_name` (the visible image) and `thermal_file_name`, both relative to
root/<split>/, root/ or the JSON's folder (the first that holds the first image). Category ids may be
anything; they map to contiguous class ids in increasing id order. Annotations (`bbox` = x y w h in
pixels) go to all three branches, unless one carries `"modality": "visible" | "thermal" | "fused"`, in
which case it goes to that branch only. `iscrowd: 1` annotations are skipped.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from msmine.errors import UserError
from msmine.train.data.dataset import PairDataset, PairRecord
from msmine.train.data.sample import BRANCHES, clip_and_filter

log = logging.getLogger(__name__)


def coco_json_candidates(root: Path, split: str) -> list[Path]:
    return [
        root / "annotations" / f"{split}.json",
        root / "annotations" / f"instances_{split}.json",
        root / f"{split}.json",
        root / split / "annotations.json",
    ]


def find_coco_json(root: Path, split: str) -> Path | None:
    for candidate in coco_json_candidates(root, split):
        if candidate.is_file():
            return candidate
    return None


class CocoReader:
    """Boxes parsed once from the JSON at open time: image id -> per-branch (rows, labels)."""

    def __init__(self, per_image: dict[str, dict[str, tuple[list, list]]]) -> None:
        self.per_image = per_image

    def read_boxes(self, record: PairRecord, size: tuple[int, int]):
        boxes, labels = {}, {}
        for branch in BRANCHES:
            rows, classes = self.per_image[record.id][branch]
            boxes[branch], labels[branch] = clip_and_filter(
                np.array(rows, np.float32).reshape(-1, 4), np.array(classes, np.int64), size[1], size[0]
            )
        return boxes, labels


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise UserError(f"corrupt COCO JSON {path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read COCO JSON {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise UserError(f"COCO JSON {path}: expected an object with an 'images' list")
    return data


def _image_base(root: Path, split: str, json_path: Path, first: dict) -> Path:
    for base in (root / split, root, json_path.parent):
        if (base / first["file_name"]).is_file():
            return base
    raise UserError(f"missing visible image {first['file_name']!r} (looked in {root / split}, {root}, {json_path.parent})")


def open_coco(root: Path, split: str) -> PairDataset:
    json_path = find_coco_json(root, split)
    if json_path is None:
        raise UserError(f"no COCO JSON for split {split!r}; looked for {', '.join(map(str, coco_json_candidates(root, split)))}")
    data = _load_json(json_path)
    categories = data.get("categories") or []
    if not categories:
        raise UserError(f"COCO JSON {json_path}: no 'categories'")
    if not all(isinstance(c, dict) and isinstance(c.get("id"), int) for c in categories):
        raise UserError(f"COCO JSON {json_path}: every category needs an integer 'id'")
    categories = sorted(categories, key=lambda c: c["id"])
    class_of = {c["id"]: i for i, c in enumerate(categories)}
    class_names = [str(c.get("name", c["id"])) for c in categories]

    images = data["images"]
    if not images:
        raise UserError(f"COCO JSON {json_path}: 'images' is empty")
    for index, image in enumerate(images):
        if not isinstance(image, dict) or not {"id", "file_name", "thermal_file_name"} <= image.keys():
            raise UserError(f"COCO JSON {json_path}: image #{index} needs 'id', 'file_name' and 'thermal_file_name'")
    base = _image_base(root, split, json_path, images[0])

    id_of_image: dict = {}
    records = []
    per_image: dict[str, dict[str, tuple[list, list]]] = {}
    stems = [Path(image["file_name"]).stem for image in images]
    use_stems = len(set(stems)) == len(stems)  # ids are file stems unless two files share one
    for image, stem in zip(images, stems):
        pair_id = stem if use_stems else str(image["id"])
        if image["id"] in id_of_image or pair_id in per_image:
            raise UserError(f"COCO JSON {json_path}: duplicate image id {image['id']!r}")
        id_of_image[image["id"]] = pair_id
        per_image[pair_id] = {b: ([], []) for b in BRANCHES}
        is_night = image.get("is_night")
        records.append(
            PairRecord(
                id=pair_id,
                visible=base / image["file_name"],
                thermal=base / image["thermal_file_name"],
                is_night=bool(is_night) if isinstance(is_night, bool) else None,
            )
        )

    skipped_crowd = 0
    for index, ann in enumerate(data.get("annotations") or []):
        if not isinstance(ann, dict):
            raise UserError(f"COCO JSON {json_path}: annotation #{index} is not an object")
        where = f"COCO JSON {json_path}: annotation #{index} (id {ann.get('id')!r})"
        if ann.get("image_id") not in id_of_image:
            raise UserError(f"{where}: unknown image_id {ann.get('image_id')!r}")
        if ann.get("category_id") not in class_of:
            raise UserError(f"{where}: unknown category_id {ann.get('category_id')!r}")
        bbox = ann.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
        ):
            raise UserError(f"{where}: 'bbox' must be [x, y, w, h] numbers, got {bbox!r}")
        if ann.get("iscrowd", 0):
            skipped_crowd += 1
            continue
        modality = ann.get("modality")
        if modality is not None and modality not in BRANCHES:
            raise UserError(f"{where}: 'modality' must be one of {list(BRANCHES)}, got {modality!r}")
        x, y, w, h = (float(v) for v in bbox)
        for branch in (modality,) if modality else BRANCHES:
            rows, classes = per_image[id_of_image[ann["image_id"]]][branch]
            rows.append([x, y, x + w, y + h])
            classes.append(class_of[ann["category_id"]])
    if skipped_crowd:
        log.info("%s: skipped %d iscrowd annotations", json_path, skipped_crowd)
    log.info("COCO %s: %d pairs from %s", split, len(records), json_path)
    return PairDataset(records, CocoReader(per_image), class_names, None, root=root, fmt="coco")
