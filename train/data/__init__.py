"""Datasets of visible/thermal pairs (MSRS, KAIST, VOC/LLVIP, COCO), augmentations, YOLO label files.

    from msmine.train.data import open_dataset, PairAugment
    ds = open_dataset("../shared/data/msrs", "train")          # lazy; ds[i] -> PairSample
    sample = PairAugment((256, 320), train=True)(ds[0], np.random.default_rng(0))
"""

from msmine.train.data.augment import PairAugment, letterbox, unletterbox_boxes
from msmine.train.data.dataset import PairDataset, PairRecord
from msmine.train.data.formats import FORMATS, detect_format, open_dataset
from msmine.train.data.sample import BRANCHES, PairSample
from msmine.train.data.yolo import read_class_names, read_yolo_labels, write_class_names, write_yolo_labels

__all__ = [
    "BRANCHES",
    "FORMATS",
    "PairAugment",
    "PairDataset",
    "PairRecord",
    "PairSample",
    "detect_format",
    "letterbox",
    "open_dataset",
    "read_class_names",
    "read_yolo_labels",
    "unletterbox_boxes",
    "write_class_names",
    "write_yolo_labels",
]
