"""VOC XML pairs, as LLVIP ships them:

    root/visible/<split>/<id>.jpg   (or root/<split>/visible/<id>.jpg)
    root/infrared/<split>/<id>.jpg  (or root/<split>/infrared/<id>.jpg; `lwir` and `thermal` also accepted)
    root/Annotations/<id>.xml       (or root/<split>/Annotations/<id>.xml)
    root/classes.txt                optional; otherwise the sorted object names found in all the XML files

One box set per pair, used for all three branches. Boxes are taken as written (xmin ymin xmax ymax in
pixels), clipped to the image.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from msmine.errors import UserError
from msmine.train.data.dataset import PairDataset, PairRecord
from msmine.train.data.layout import first_dir, pair_images, require_files
from msmine.train.data.sample import clip_and_filter, empty_boxes, same_for_all_branches
from msmine.train.data.yolo import read_class_names

log = logging.getLogger(__name__)

THERMAL_NAMES = ("infrared", "lwir", "thermal")


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except FileNotFoundError:
        raise UserError(f"missing annotation file: {path}") from None
    except ET.ParseError as exc:
        raise UserError(f"corrupt VOC XML {path}: {exc}") from None
    except OSError as exc:
        raise UserError(f"cannot read annotation file {path}: {exc.strerror}") from None


def read_voc_objects(path: Path) -> list[tuple[str, list[float]]]:
    """(name, [xmin, ymin, xmax, ymax]) for every <object> of a VOC XML file."""
    objects = []
    for index, obj in enumerate(_parse_xml(path).iter("object")):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if not name or box is None:
            raise UserError(f"{path}: object #{index + 1} lacks <name> or <bndbox>")
        try:
            coords = [float(box.findtext(tag, "")) for tag in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError:
            raise UserError(f"{path}: object #{index + 1} has a missing or non-numeric bndbox coordinate") from None
        if not all(math.isfinite(c) for c in coords):
            raise UserError(f"{path}: object #{index + 1} has a non-finite bndbox coordinate")
        objects.append((name, coords))
    return objects


class VocReader:
    def __init__(self, annotation_dir: Path, class_names: list[str]) -> None:
        self.annotation_dir = annotation_dir
        self.class_index = {name: i for i, name in enumerate(class_names)}

    def read_boxes(self, record: PairRecord, size: tuple[int, int]):
        path = self.annotation_dir / f"{record.id}.xml"
        rows, labels = [], []
        for name, coords in read_voc_objects(path):
            if name not in self.class_index:
                raise UserError(f"{path}: unknown class {name!r} (classes: {sorted(self.class_index)})")
            rows.append(coords)
            labels.append(self.class_index[name])
        if rows:
            boxes, classes = clip_and_filter(np.array(rows, np.float32), np.array(labels, np.int64), size[1], size[0])
        else:
            boxes, classes = empty_boxes()
        return same_for_all_branches(boxes, classes)


def _locate(root: Path, split: str) -> tuple[Path | None, Path | None, Path | None]:
    visible = first_dir([root / "visible" / split, root / split / "visible"])
    thermal = first_dir([root / t / split for t in THERMAL_NAMES] + [root / split / t for t in THERMAL_NAMES])
    annotations = first_dir([root / split / "Annotations", root / "Annotations"])
    return visible, thermal, annotations


def looks_like_voc(root: Path, split: str) -> bool:
    return all(p is not None for p in _locate(root, split))


def _scan_class_names(root: Path) -> list[str]:
    folders = [p for p in [root / "Annotations", *root.glob("*/Annotations")] if p.is_dir()]
    names: set[str] = set()
    for folder in folders:
        for xml_path in folder.glob("*.xml"):
            names.update(name for name, _ in read_voc_objects(xml_path))
    if not names:
        raise UserError(f"no objects in any VOC annotation under {root}; write {root / 'classes.txt'}")
    return sorted(names)


def open_voc(root: Path, split: str) -> PairDataset:
    visible_dir, thermal_dir, annotation_dir = _locate(root, split)
    if visible_dir is None or thermal_dir is None or annotation_dir is None:
        raise UserError(
            f"VOC layout: need {root}/visible/{split}, {root}/infrared/{split} and {root}/Annotations "
            f"(or the same under {root}/{split}/)"
        )
    pairs = pair_images(visible_dir, thermal_dir)
    require_files(annotation_dir, [pair_id for pair_id, _, _ in pairs], ".xml", "annotation file")
    class_file = root / "classes.txt"
    class_names = read_class_names(class_file) if class_file.is_file() else _scan_class_names(root)
    records = [PairRecord(id=pair_id, visible=v, thermal=t) for pair_id, v, t in pairs]
    log.info("VOC %s: %d pairs from %s, classes %s", split, len(records), root, class_names)
    return PairDataset(records, VocReader(annotation_dir, class_names), class_names, None, root=root, fmt="voc")
