"""`open_dataset`: pick the reader for a folder's layout (or the one the user names)."""

from __future__ import annotations

from pathlib import Path

from msmine.errors import UserError
from msmine.train.data.coco import find_coco_json, open_coco
from msmine.train.data.dataset import PairDataset
from msmine.train.data.kaist import looks_like_kaist, open_kaist
from msmine.train.data.msrs import looks_like_msrs, open_msrs
from msmine.train.data.voc import looks_like_voc, open_voc

OPENERS = {"msrs": open_msrs, "kaist": open_kaist, "voc": open_voc, "coco": open_coco}
FORMATS = ("auto", *OPENERS)


def detect_format(root: Path, split: str) -> str:
    """The format of `root` for `split`, from its layout; UserError when nothing fits."""
    if find_coco_json(root, split) is not None:
        return "coco"
    if looks_like_voc(root, split):
        return "voc"
    split_dir = root / split
    if looks_like_msrs(root, split) and ((split_dir / "labels").is_dir() or (split_dir / "segmentation").is_dir()):
        return "msrs"
    if looks_like_kaist(root, split):
        return "kaist"
    if not split_dir.is_dir() and (looks_like_msrs(root, "train") or looks_like_msrs(root, "test")):
        folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise UserError(f"no split {split!r} in {root} (split folders there: {', '.join(folders)})")
    raise UserError(
        f"cannot tell the dataset format of {root} (split {split!r}): expected MSRS "
        f"({split}/visible, {split}/infrared, {split}/labels), KAIST ({split}/visible, {split}/lwir, "
        f"{split}/annotations), VOC/LLVIP (visible/{split}, infrared/{split}, Annotations) or COCO "
        f"(annotations/{split}.json); name the format with --fmt NAME (msmine evaluate) or "
        f"--set data.fmt=NAME (msmine train, msmine al)"
    )


def open_dataset(root, split: str = "train", fmt: str = "auto") -> PairDataset:
    """Open one split of a paired visible/thermal dataset.

    fmt is "msrs", "kaist", "voc", "coco" or "auto" (detected from the layout; see docs/datasets.md).
    Missing folders/files and corrupt annotation files raise UserError naming the file.
    """
    root = Path(root).expanduser()
    if fmt not in FORMATS:
        raise UserError(f"unknown dataset format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not split or "/" in split or "\\" in split or split in (".", ".."):
        raise UserError(f"invalid split name {split!r}")
    if not root.is_dir():
        raise UserError(f"dataset folder not found: {root}")
    if fmt == "auto":
        fmt = detect_format(root, split)
    return OPENERS[fmt](root, split)
