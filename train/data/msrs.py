"""The MSRS layout (also what `msmine pull` writes):

    root/classes.txt                                  detection classes (`id name` or `name` lines)
    root/segmentation_classes.txt                     optional, segmentation classes
    root/<split>/visible/<id>.<jpg|png>               RGB
    root/<split>/infrared/<id>.<jpg|png>              thermal
    root/<split>/labels/{visible,infrared,fusion}/<id>.txt   YOLO boxes per branch (optional as a whole)
    root/<split>/segmentation/<id>.png                optional masks, pixel value = class id
"""

from __future__ import annotations

import logging
from pathlib import Path

from msmine.errors import UserError
from msmine.train.data.dataset import PairDataset, PairRecord
from msmine.train.data.layout import pair_images, require_files
from msmine.train.data.sample import BRANCHES, empty_boxes
from msmine.train.data.yolo import read_class_names, read_yolo_labels

log = logging.getLogger(__name__)

# branch -> label folder name in the MSRS layout
LABEL_FOLDERS = {"visible": "visible", "thermal": "infrared", "fused": "fusion"}


def day_night_from_id(pair_id: str) -> bool | None:
    """MSRS naming: an id ending in N is night, D is day; anything else is unknown."""
    if pair_id.endswith("N"):
        return True
    if pair_id.endswith("D"):
        return False
    return None


class MsrsReader:
    """Reads the three YOLO label files of a pair (or none, for a segmentation-only dataset)."""

    def __init__(self, split_dir: Path, num_classes: int, has_labels: bool) -> None:
        self.split_dir = split_dir
        self.num_classes = num_classes
        self.has_labels = has_labels

    def label_path(self, pair_id: str, branch: str) -> Path:
        return self.split_dir / "labels" / LABEL_FOLDERS[branch] / f"{pair_id}.txt"

    def read_boxes(self, record: PairRecord, size: tuple[int, int]):
        boxes, labels = {}, {}
        for branch in BRANCHES:
            if self.has_labels:
                boxes[branch], labels[branch] = read_yolo_labels(
                    self.label_path(record.id, branch), size, self.num_classes
                )
            else:
                boxes[branch], labels[branch] = empty_boxes()
        return boxes, labels


def looks_like_msrs(root: Path, split: str) -> bool:
    split_dir = root / split
    return (split_dir / "visible").is_dir() and (split_dir / "infrared").is_dir()


def open_msrs(root: Path, split: str) -> PairDataset:
    split_dir = root / split
    visible_dir, thermal_dir = split_dir / "visible", split_dir / "infrared"
    for folder in (visible_dir, thermal_dir):
        if not folder.is_dir():
            raise UserError(f"MSRS layout: missing folder {folder}")
    pairs = pair_images(visible_dir, thermal_dir)
    ids = [pair_id for pair_id, _, _ in pairs]

    labels_dir = split_dir / "labels"
    has_labels = labels_dir.is_dir()
    if has_labels:
        for branch, folder in LABEL_FOLDERS.items():
            if not (labels_dir / folder).is_dir():
                raise UserError(f"MSRS layout: missing label folder {labels_dir / folder} ({branch} branch)")
            require_files(labels_dir / folder, ids, ".txt", "label file")
    mask_dir = split_dir / "segmentation"
    has_masks = mask_dir.is_dir()
    if has_masks:
        require_files(mask_dir, ids, ".png", "segmentation mask")
    if not has_labels and not has_masks:
        raise UserError(f"MSRS layout: {split_dir} has neither labels/ nor segmentation/")

    class_file = root / "classes.txt"
    class_names = read_class_names(class_file) if class_file.is_file() else []
    if has_labels and not class_names:
        raise UserError(f"missing class list: {class_file}")
    seg_file = root / "segmentation_classes.txt"
    segmentation_classes = read_class_names(seg_file) if seg_file.is_file() else None
    if has_masks and segmentation_classes is None:
        log.warning("%s has masks but no %s; segmentation class names unknown", split_dir, seg_file)

    records = [
        PairRecord(
            id=pair_id,
            visible=visible,
            thermal=thermal,
            mask=mask_dir / f"{pair_id}.png" if has_masks else None,
            is_night=day_night_from_id(pair_id),
        )
        for pair_id, visible, thermal in pairs
    ]
    reader = MsrsReader(split_dir, len(class_names), has_labels)
    log.info("MSRS %s: %d pairs from %s", split, len(records), split_dir)
    return PairDataset(records, reader, class_names, segmentation_classes, root=root, fmt="msrs")
