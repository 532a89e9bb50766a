"""KAIST-style pairs with per-image annotation text files in Piotr Dollar's 'bbGt' format.

    root/<split>/visible/<id>.<jpg|png>          RGB
    root/<split>/lwir/<id>.<jpg|png>             thermal
    root/<split>/annotations/<id>.txt            one box set -> every branch
    root/<split>/annotations/visible/<id>.txt    optional paired annotations: visible branch
    root/<split>/annotations/lwir/<id>.txt       optional paired annotations: thermal branch

With paired folders the fused branch reads annotations/<id>.txt when present, else the lwir set.
The split folder may be left out (root/visible, root/lwir, root/annotations). KAIST's own release
tree is read too: root/images/setNN/VNNN/{visible,lwir}/INNNNN.jpg with
root/annotations/setNN/VNNN/INNNNN.txt (or annotations/{visible,lwir}/setNN/... for paired ones) and
the split listed in root/imageSets/<split>.txt (lines `set00/V000/I01216`). Only the `person` label is
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
from msmine.train.data.dataset import PairDataset, PairRecord
from msmine.train.data.imageio import find_image
from msmine.train.data.layout import pair_images, require_files, split_root
from msmine.train.data.sample import clip_and_filter, empty_boxes

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
    def __init__(self, sources: dict[str, Path], relative: dict[str, str] | None = None) -> None:
        self.sources = sources  # branch -> annotation folder
        self.relative = relative or {}  # pair id -> annotation path below the folder (nested layout)

    def read_boxes(self, record: PairRecord, size: tuple[int, int]):
        boxes, labels = {}, {}
        relative = self.relative.get(record.id, record.id)
        for branch, folder in self.sources.items():
            boxes[branch], labels[branch] = parse_bbgt(folder / f"{relative}.txt", size)
        return boxes, labels


def _is_nested(root: Path) -> bool:
    return (root / "images").is_dir() and next(root.glob("images/*/*/lwir"), None) is not None


def looks_like_kaist(root: Path, split: str) -> bool:
    flat = any((base / "visible").is_dir() and (base / "lwir").is_dir() for base in (root / split, root))
    return flat or _is_nested(root)


def _annotation_sources(annotations: Path, joint_present: bool) -> tuple[dict[str, Path], bool]:
    """branch -> annotation folder, and whether paired (visible/lwir) annotations exist."""
    if not annotations.is_dir():
        raise UserError(f"KAIST layout: missing annotation folder {annotations}")
    paired = (annotations / "visible").is_dir() and (annotations / "lwir").is_dir()
    if not paired:
        return {"visible": annotations, "thermal": annotations, "fused": annotations}, False
    return {
        "visible": annotations / "visible",
        "thermal": annotations / "lwir",
        "fused": annotations if joint_present else annotations / "lwir",
    }, True


def open_kaist(root: Path, split: str) -> PairDataset:
    flat = any((b / "visible").is_dir() and (b / "lwir").is_dir() for b in (root / split, root))
    if not flat and _is_nested(root):
        return _open_nested(root, split)
    base = split_root(root, split, ("visible", "lwir"))
    pairs = pair_images(base / "visible", base / "lwir")
    ids = [pair_id for pair_id, _, _ in pairs]
    annotations = base / "annotations"
    joint = annotations.is_dir() and any(p.suffix == ".txt" for p in annotations.iterdir())
    sources, paired = _annotation_sources(annotations, joint)
    for folder in set(sources.values()):
        require_files(folder, ids, ".txt", "annotation file")
    records = [
        PairRecord(id=pair_id, visible=v, thermal=t, is_night=day_night_from_kaist_id(pair_id))
        for pair_id, v, t in pairs
    ]
    log.info("KAIST %s: %d pairs from %s (paired annotations: %s)", split, len(records), base, paired)
    return PairDataset(records, KaistReader(sources), list(KAIST_CLASSES), None, root=root, fmt="kaist")


def _split_entries(root: Path, split: str) -> list[str]:
    """`setNN/VNNN/INNNNN` entries of the split list, or every pair under root/images without one."""
    for list_file in (root / "imageSets" / f"{split}.txt", root / f"{split}.txt"):
        if list_file.is_file():
            entries = []
            for line in list_file.read_text(encoding="utf-8-sig").splitlines():
                entry = line.strip().strip("/")
                if entry:
                    entries.append(str(Path(entry).with_suffix("")) if Path(entry).suffix else entry)
            if not entries:
                raise UserError(f"KAIST split list is empty: {list_file}")
            return entries
    log.warning("no %s/imageSets/%s.txt: using every pair under %s/images for split %r", root, split, root, split)
    entries = []
    for visible_dir in sorted(root.glob("images/*/*/visible")):
        prefix = visible_dir.parent.relative_to(root / "images").as_posix()
        entries.extend(f"{prefix}/{p.stem}" for p in sorted(visible_dir.iterdir()) if p.is_file())
    return entries


def _open_nested(root: Path, split: str) -> PairDataset:
    """KAIST's release tree: images/setNN/VNNN/{visible,lwir}/INNNNN.jpg, annotations/setNN/VNNN/INNNNN.txt."""
    entries = _split_entries(root, split)
    annotations = root / "annotations"
    joint = annotations.is_dir() and any(p.name.startswith("set") for p in annotations.iterdir())
    sources, paired = _annotation_sources(annotations, joint)
    records, relative = [], {}
    for entry in entries:
        parts = entry.split("/")
        if len(parts) != 3:
            raise UserError(f"KAIST split entry must look like set00/V000/I00000, got {entry!r}")
        set_name, video, frame = parts
        folder = root / "images" / set_name / video
        visible = find_image(folder / "visible", frame)
        thermal = find_image(folder / "lwir", frame)
        if visible is None:
            raise UserError(f"missing visible image: {folder / 'visible' / frame}.<jpg|png>")
        if thermal is None:
            raise UserError(f"missing thermal image: {folder / 'lwir' / frame}.<jpg|png>")
        pair_id = "_".join(parts)
        for source in set(sources.values()):
            if not (source / f"{entry}.txt").is_file():
                raise UserError(f"missing annotation file: {source / entry}.txt")
        relative[pair_id] = entry
        records.append(PairRecord(id=pair_id, visible=visible, thermal=thermal, is_night=day_night_from_kaist_id(set_name)))
    if not records:
        raise UserError(f"no KAIST pairs found under {root / 'images'}")
    log.info("KAIST %s: %d pairs from %s (release tree, paired annotations: %s)", split, len(records), root, paired)
    return PairDataset(records, KaistReader(sources, relative), list(KAIST_CLASSES), None, root=root, fmt="kaist")
