"""`PairDataset`: a lazy, indexable list of visible/thermal pairs; each format supplies an annotation reader."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, overload

import numpy as np

from msmine.errors import UserError
from msmine.train.data.imageio import image_size, read_mask, read_thermal, read_visible
from msmine.train.data.sample import PairSample


@dataclass(frozen=True)
class PairRecord:
    """Where one pair's files are. Annotation files are found by the format's reader."""

    id: str  # dataset-unique id
    visible: Path  # visible (RGB) image file
    thermal: Path  # thermal image file
    mask: Path | None = None  # segmentation mask file, if the dataset has masks
    is_night: bool | None = None  # day/night flag where the dataset says


class AnnotationReader(Protocol):
    """Reads one record's per-branch boxes. Each dataset format implements it."""

    def read_boxes(
        self, record: PairRecord, size: tuple[int, int]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(boxes, labels) dicts keyed by branch; `size` is the pair's (height, width)."""
        ...


class PairDataset(Sequence[PairSample]):
    """Visible/thermal pairs of one split. Images are read in ``__getitem__`` (lazy).

    ``annotations(i)`` gives boxes, labels, mask and day/night without decoding the images (its
    ``visible``/``thermal`` arrays are empty 0 x 0 placeholders).
    """

    def __init__(
        self,
        records: Sequence[PairRecord],
        reader: AnnotationReader,
        class_names: list[str],
        segmentation_classes: list[str] | None = None,
        root: Path | None = None,
        fmt: str = "",
    ) -> None:
        self._records = list(records)
        self._reader = reader
        self.class_names = list(class_names)  # detection classes
        self.segmentation_classes = list(segmentation_classes) if segmentation_classes is not None else None
        self.root = root  # where the dataset was opened from (informational)
        self.format = fmt  # "msrs" / "kaist" / "voc" / "coco"

    # -- Sequence ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    @overload
    def __getitem__(self, index: int) -> PairSample: ...

    @overload
    def __getitem__(self, index: slice) -> PairDataset: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.subset(range(len(self))[index])
        record = self.record(index)
        visible = read_visible(record.visible)
        thermal = read_thermal(record.thermal)
        if visible.shape[:2] != thermal.shape[:2]:
            raise UserError(
                f"pair {record.id!r}: visible image {record.visible} is {visible.shape[1]}x{visible.shape[0]} "
                f"but thermal image {record.thermal} is {thermal.shape[1]}x{thermal.shape[0]}; "
                "pairs must be aligned and the same size"
            )
        return self._sample(record, visible, thermal, size=visible.shape[:2])

    def __repr__(self) -> str:
        return f"PairDataset(format={self.format!r}, root={str(self.root)!r}, pairs={len(self)})"

    # -- extras ----------------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        return [r.id for r in self._records]

    @property
    def is_night(self) -> list[bool | None]:
        """Day/night flag per pair (None where unknown), in index order."""
        return [r.is_night for r in self._records]

    def record(self, index: int) -> PairRecord:
        """File locations of pair `index` (negative indices count from the end)."""
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int or a slice, got {type(index).__name__}")
        n = len(self._records)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} pairs")
        return self._records[int(index)]

    def subset(self, indices) -> PairDataset:
        """A dataset of the pairs at `indices` (in that order), sharing this one's reader and classes."""
        records = [self.record(int(i)) for i in np.asarray(list(indices), dtype=np.int64).reshape(-1)]
        return PairDataset(records, self._reader, self.class_names, self.segmentation_classes, self.root, self.format)

    def annotations(self, index: int, with_mask: bool = True) -> PairSample:
        """Boxes/labels/mask/is_night of pair `index` without decoding the images.

        The returned sample's ``visible``/``thermal`` are empty (0 x 0) arrays. ``with_mask=False``
        also skips decoding the mask (``mask`` is None), for detection-only uses.
        """
        record = self.record(index)
        mask = read_mask(record.mask) if record.mask is not None and with_mask else None
        size = mask.shape[:2] if mask is not None else image_size(record.visible)
        empty_visible = np.zeros((0, 0, 3), np.uint8)
        empty_thermal = np.zeros((0, 0, 1), np.uint8)
        if mask is None:
            boxes, labels = self._reader.read_boxes(record, (int(size[0]), int(size[1])))
            return PairSample(record.id, empty_visible, empty_thermal, boxes, labels, None, record.is_night)
        return self._sample(record, empty_visible, empty_thermal, size=size, mask=mask)

    def _sample(
        self,
        record: PairRecord,
        visible: np.ndarray,
        thermal: np.ndarray,
        size: tuple[int, int],
        mask: np.ndarray | None = None,
    ) -> PairSample:
        if mask is None and record.mask is not None:
            mask = read_mask(record.mask)
        if mask is not None and tuple(mask.shape[:2]) != tuple(size):
            raise UserError(
                f"segmentation mask {record.mask} is {mask.shape[1]}x{mask.shape[0]} but the pair is "
                f"{size[1]}x{size[0]}"
            )
        boxes, labels = self._reader.read_boxes(record, (int(size[0]), int(size[1])))
        return PairSample(
            id=record.id,
            visible=visible,
            thermal=thermal,
            boxes=boxes,
            labels=labels,
            mask=mask,
            is_night=record.is_night,
        )
