"""Shared set-up of the training CLIs: open the splits, fit the model config to the dataset."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from msmine.errors import UserError
from msmine.train.config import TrainConfig

log = logging.getLogger(__name__)


def open_split(data_dir, split: str, fmt: str = "auto", limit: int = 0):
    from msmine.train.data import open_dataset

    root = Path(data_dir)
    if not root.exists():
        raise UserError(f"--data {root}: no such directory")
    if not root.is_dir():
        raise UserError(f"--data {root}: not a directory")
    dataset = open_dataset(root, split=split, fmt=fmt)
    if len(dataset) == 0:
        raise UserError(f"--data {root}: split {split!r} has no pairs")
    if limit and limit < len(dataset):
        dataset = dataset.subset(range(limit))
    return dataset


def fit_model_to_dataset(cfg: TrainConfig, dataset) -> None:
    """Take the class list from the dataset (detection classes or segmentation classes)."""
    if cfg.model.task == "segment":
        names = dataset.segmentation_classes
        if not names:
            raise UserError(f"dataset {getattr(dataset, 'root', '')} has no segmentation classes/masks; "
                            "use --task detect")
    else:
        names = dataset.class_names
        if not names:
            raise UserError(f"dataset {getattr(dataset, 'root', '')} lists no detection classes")
    cfg.model.class_names = list(names)
    cfg.model.num_classes = len(names)


def prepared_pairs(dataset, cfg: TrainConfig, train: bool, progress: bool = False):
    from msmine.train.batching import PreparedPairs

    pairs = PreparedPairs(dataset, cfg.model.input_size, train=train, seed=cfg.seed, cache=cfg.data.cache,
                          augment=cfg.data.augment, expand_max=cfg.data.expand_max,
                          crop=cfg.data.crop)
    if cfg.data.cache:
        pairs.warm_cache(progress=progress)
    return pairs


def add_config_arguments(parser) -> None:
    parser.add_argument("--config", help="YAML config (see configs/*.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set epochs=5 --set model.backbone=vgg16")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], help="where to train (default: config, auto)")


def apply_thread_limit() -> None:
    """Honour OMP_NUM_THREADS for OpenCV too (many training processes sharing a machine)."""
    import os

    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        import cv2

        cv2.setNumThreads(int(value))


def has_split(root, split: str) -> bool:
    """Whether ``root`` holds a separate ``split`` (a folder, a COCO json or a VOC list), without opening it.

    A flat folder (pairs directly under ``root``) has no separate split: opening any split there
    gives the same pairs, so it cannot serve as a held-out set.
    """
    from msmine.train.data.coco import find_coco_json
    from msmine.train.data.voc import looks_like_voc

    root = Path(root)
    return (root / split).is_dir() or find_coco_json(root, split) is not None or looks_like_voc(root, split)


class ConcatPairs:
    """Several datasets with the same classes as one (pulled pairs plus a replay of the previous set).

    Offers what training and evaluation read of a ``PairDataset``: ``len``, items, ``record``,
    ``annotations``, ``ids``, ``is_night``, ``subset``, the class lists.
    """

    def __init__(self, parts, items=None, task: str = "detect"):
        self.parts = list(parts)
        first = self.parts[0]
        attr, what = ("segmentation_classes", "segmentation classes") if task == "segment" else ("class_names", "classes")
        for part in self.parts[1:]:
            if list(getattr(part, attr) or []) != list(getattr(first, attr) or []):
                raise UserError(f"{getattr(part, 'root', '')} has other {what} ({list(getattr(part, attr) or [])}) "
                                f"than {getattr(first, 'root', '')} ({list(getattr(first, attr) or [])})")
        self.task = task
        self._items = items if items is not None else [(j, i) for j, p in enumerate(self.parts) for i in range(len(p))]
        self.class_names = list(first.class_names)
        seg = [p.segmentation_classes for p in self.parts]
        self.segmentation_classes = seg[0] if all(s == seg[0] for s in seg) else None  # masks in every part or none
        self.root = first.root
        self.format = getattr(first, "format", "")

    def __len__(self) -> int:
        return len(self._items)

    def _at(self, index):
        j, i = self._items[int(index)]
        return self.parts[j], i

    def __getitem__(self, index):
        part, i = self._at(index)
        sample = part[i]
        if self.task != "segment" and sample.mask is not None:  # parts with and without masks: boxes only
            import dataclasses

            sample = dataclasses.replace(sample, mask=None)
        return sample

    def record(self, index):
        part, i = self._at(index)
        return part.record(i)

    def annotations(self, index, with_mask: bool = True):
        part, i = self._at(index)
        return part.annotations(i, with_mask=with_mask and self.task == "segment")

    @property
    def ids(self) -> list[str]:
        return [self.parts[j].ids[i] for j, i in self._items]

    @property
    def is_night(self) -> list:
        nights = [p.is_night for p in self.parts]
        return [nights[j][i] for j, i in self._items]

    def subset(self, indices) -> ConcatPairs:
        return ConcatPairs(self.parts, [self._items[int(i)] for i in indices], self.task)

    def __repr__(self) -> str:
        return f"ConcatPairs({' + '.join(repr(p) for p in self.parts)}, pairs={len(self)})"


def sample_pairs(dataset, count: int, seed: int):
    """``count`` pairs of ``dataset`` drawn without replacement, seeded (all of them for 0 or >= its size)."""
    import numpy as np

    if count <= 0 or count >= len(dataset):
        return dataset
    picked = np.random.default_rng([seed, 7]).choice(len(dataset), size=count, replace=False)
    return dataset.subset(sorted(int(i) for i in picked))


FRAME_NUMBER = re.compile(r"(\d+)")
VAL_BLOCK = 40  # frames per contiguous validation block (MSRS is video: neighbours stay together)


def frame_order(ids) -> list[int]:
    """Indices of ``ids`` in frame order: by the first number in each id (``00123N`` -> 123), then by id."""
    def key(i: int):
        m = FRAME_NUMBER.search(str(ids[i]))
        return (int(m.group(1)) if m else -1, str(ids[i]))

    return sorted(range(len(ids)), key=key)


def carve(dataset, fraction: float, seed: int, block: int = VAL_BLOCK):
    """(train, held-out) parts of ``dataset``: a seeded ``fraction`` (at least one pair) is held out in
    contiguous blocks of ``block`` pairs in frame order, so neighbouring video frames never straddle
    the two parts (a held-out frame's neighbours are held out too, except at a block's two ends)."""
    import numpy as np

    if not 0 < fraction < 1:
        raise UserError(f"--val-fraction must lie in (0, 1), got {fraction}")
    if len(dataset) < 2:
        raise UserError(f"cannot hold out validation pairs from {len(dataset)} pair(s); name a set with --val-data")
    ids = list(dataset.ids) if hasattr(dataset, "ids") else [str(i) for i in range(len(dataset))]
    order = frame_order(ids)
    block = max(1, min(block, len(order) // 4 or 1))
    blocks = [order[i:i + block] for i in range(0, len(order), block)]
    wanted = max(1, int(round(fraction * len(dataset))))
    held: list[int] = []
    for j in np.random.default_rng([seed, 11]).permutation(len(blocks)):
        if len(held) >= wanted:
            break
        held.extend(blocks[int(j)][: wanted - len(held)])
    kept = sorted(set(range(len(dataset))) - set(held))
    return dataset.subset(kept), dataset.subset(sorted(held))


AL_VAL_SEED = 0  # one validation carve for every active-learning run (msmine al, bench/mining_experiment.py)
EVALUATE_ON = ("test", "val")


def al_splits(data_dir, dcfg, val_fraction: float = 0.0, evaluate_on: str = "test"):
    """(train split, pool, evaluation set) of an active-learning run. The pool is the train split, less
    a validation part of ``val_fraction`` held out in contiguous frame blocks (:func:`carve`, seed
    ``AL_VAL_SEED``) when ``val_fraction > 0``; the evaluation set is the test split
    (``dcfg.val_split``, default ``test``) or, with ``evaluate_on="val"``, that held-out part (where
    hyper-parameters are chosen, so that the test split is only touched for final figures)."""
    if evaluate_on not in EVALUATE_ON:
        raise UserError(f"--evaluate-on {evaluate_on!r}: expected one of {', '.join(EVALUATE_ON)}")
    if val_fraction < 0:
        raise UserError(f"--val-fraction must lie in [0, 1), got {val_fraction}")
    if evaluate_on == "val" and not val_fraction:
        raise UserError("--evaluate-on val needs a validation part: give --val-fraction (e.g. 0.2)")
    train_all = open_split(data_dir, dcfg.train_split, dcfg.fmt, dcfg.limit)
    pool, held = carve(train_all, val_fraction, AL_VAL_SEED) if val_fraction else (train_all, None)
    if evaluate_on == "val":
        return train_all, pool, held
    return train_all, pool, open_split(data_dir, dcfg.val_split or "test", dcfg.fmt, dcfg.val_limit)
