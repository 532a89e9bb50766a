"""Shared set-up of the training CLIs: open the splits, fit the model config to the dataset."""

from __future__ import annotations

import logging
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
                          augment=cfg.data.augment, expand_max=cfg.data.expand_max)
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
