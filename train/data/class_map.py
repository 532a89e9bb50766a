"""Class maps: use a dataset whose classes differ from a model's (an MSRS model on person-only LLVIP).

A class map says, by name, which class of the dataset is which class of the model. Classes with
the same name (case-insensitive) map to each other without being named; a dataset class that maps
to nothing is dropped (its boxes are removed, and the count is logged once). Masks are not
remapped: segmentation class ids stay those of the dataset.

Spelled on the command line as ``--class-map pedestrian=person,van=car`` or as a path to a YAML
file holding ``{dataset_class: model_class}``.

Fine-tuning (``msmine train --init CKPT --class-map ...``): the new model has the init model's classes
that the dataset maps to (:func:`fine_tune_classes`), each head row starting from that class's row of
the init model (:func:`remap_detection_heads`); replayed and validation sets are renumbered into them.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import yaml

from msmine.errors import UserError
from msmine.train.data.dataset import AnnotationReader, PairDataset, PairRecord

log = logging.getLogger(__name__)


def parse_class_map(spec: str | None) -> dict[str, str]:
    """``"a=b,c=d"`` or a YAML file path -> {dataset class: model class}. Empty for None/""."""
    if not spec:
        return {}
    path = Path(spec).expanduser()
    if "=" not in spec and path.suffix in (".yaml", ".yml", ".json") or path.is_file():
        if not path.is_file():
            raise UserError(f"class map file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"cannot read class map {path}: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise UserError(f"class map {path} must be a mapping of dataset class name -> model class name")
        return {k.strip(): v.strip() for k, v in data.items()}
    mapping: dict[str, str] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise UserError(f"bad class map entry {item!r}: expected DATASET_CLASS=MODEL_CLASS (e.g. pedestrian=person)")
        mapping[source.strip()] = target.strip()
    return mapping


def class_lookup(source: list[str], target: list[str], mapping: dict[str, str]) -> np.ndarray:
    """Index table: source class id -> target class id, or -1 for a dropped class."""
    lower_target = {name.lower(): i for i, name in enumerate(target)}
    lower_source = {name.lower() for name in source}
    unknown_sources = sorted(k for k in mapping if k.lower() not in lower_source)
    if unknown_sources:
        raise UserError(
            f"class map names dataset classes {unknown_sources} that the dataset does not have "
            f"(its classes: {', '.join(source)})"
        )
    lower_map = {k.lower(): v for k, v in mapping.items()}
    table = np.full(len(source), -1, np.int64)
    for i, name in enumerate(source):
        wanted = lower_map.get(name.lower(), name)
        j = lower_target.get(wanted.lower())
        if j is None and name.lower() in lower_map:
            raise UserError(f"class map sends {name!r} to {wanted!r}, which the model does not have "
                            f"(its classes: {', '.join(target)})")
        table[i] = -1 if j is None else j
    if (table < 0).all():
        raise UserError(
            f"no class of the dataset ({', '.join(source)}) matches a class of the model "
            f"({', '.join(target)}); give --class-map DATASET_CLASS=MODEL_CLASS"
        )
    return table


class _MappedReader:
    def __init__(self, reader: AnnotationReader, table: np.ndarray) -> None:
        self._reader = reader
        self._table = table

    def read_boxes(self, record: PairRecord, size: tuple[int, int]):
        boxes, labels = self._reader.read_boxes(record, size)
        out_boxes, out_labels = {}, {}
        for branch, branch_labels in labels.items():
            mapped = self._table[branch_labels] if len(branch_labels) else branch_labels
            keep = mapped >= 0
            out_boxes[branch] = boxes[branch][keep]
            out_labels[branch] = mapped[keep].astype(np.int64)
        return out_boxes, out_labels


def map_classes(dataset: PairDataset, target: list[str], mapping: dict[str, str] | None = None) -> PairDataset:
    """``dataset`` with its box labels renumbered into ``target``'s classes (see the module doc)."""
    mapping = mapping or {}
    if list(dataset.class_names) == list(target) and not mapping:
        return dataset
    table = class_lookup(list(dataset.class_names), list(target), mapping)
    dropped = [name for name, j in zip(dataset.class_names, table) if j < 0]
    pairs = [f"{s}->{target[j]}" for s, j in zip(dataset.class_names, table) if j >= 0]
    log.info("class map: %s%s", ", ".join(pairs), f"; dropped: {', '.join(dropped)}" if dropped else "")
    records = [dataset.record(i) for i in range(len(dataset))]
    return PairDataset(records, _MappedReader(dataset._reader, table), list(target),
                       dataset.segmentation_classes, dataset.root, dataset.format)


def fine_tune_classes(dataset_names: list[str], model_names: list[str],
                      mapping: dict[str, str] | None = None) -> tuple[list[str], list[int]]:
    """The classes of a model fine-tuned from a ``model_names`` model on a ``dataset_names`` set.

    -> (the model's classes that some dataset class maps to, in the model's order; their ids in the
    model). An MSRS model (person, car, bike, ...) on a person-only set becomes a person model whose
    head rows start from the MSRS model's person rows."""
    table = class_lookup(list(dataset_names), list(model_names), mapping or {})
    rows = sorted({int(j) for j in table if j >= 0})
    return [model_names[j] for j in rows], rows


HEAD_CLASS_PARAM = re.compile(r"^heads\.[^.]+\.cls\.\d+\.(weight|bias)$")


def remap_detection_heads(state: dict, rows: list[int], num_classes: int) -> dict:
    """A detection model's weights (``state_dict``) with its class outputs cut down to ``rows``.

    Each class conv of the multibox heads has ``anchors x (1 + num_classes)`` outputs (background
    first); the result keeps background and the classes ``rows`` (model class ids), in that order,
    so the new model's class i starts as the old model's class ``rows[i]``. Other weights are shared."""
    per_anchor = num_classes + 1
    out = dict(state)
    touched = 0
    for key, tensor in state.items():
        if not HEAD_CLASS_PARAM.match(key):
            continue
        if tensor.shape[0] % per_anchor:
            raise UserError(f"--init head {key} has {tensor.shape[0]} outputs, not a multiple of {per_anchor} "
                            f"(1 + {num_classes} classes)")
        anchors = tensor.shape[0] // per_anchor
        keep = [a * per_anchor + o for a in range(anchors) for o in [0, *[r + 1 for r in rows]]]
        out[key] = tensor[keep].clone()
        touched += 1
    if not touched:
        raise UserError("--init model has no multibox class heads to map (class maps are for detection)")
    return out
