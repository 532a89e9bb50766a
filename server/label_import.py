"""Import labels back from a labelling tool: COCO JSON or YOLO txt (one file or a zip), per modality.

Images are matched to pairs by file stem: ``<upload_id>.<ext>`` (the names the export uses).
``modality`` is ``visible``, ``infrared``, ``fusion`` or ``all`` (one set used for all three);
``auto`` takes it from a ``visible``/``infrared``/``fusion`` folder in the file path, else ``all``.
Boxes are stored YOLO-style, ``[class_id, cx, cy, w, h]`` normalised, with class ids into the pair's
own ``class_names`` (matched by name).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from msmine.errors import UserError
from msmine.layout import parse_class_names
from msmine.server.metadata import MetadataStore
from msmine.server.records import MODALITIES

MODALITY_CHOICES = ("auto", "all", *MODALITIES)
_UPLOAD_ID = re.compile(r"^[0-9a-f]{64}$")
MAX_YOLO_FILES = 200_000


@dataclass
class ImportResult:
    labels: dict[tuple[str, str], list] = field(default_factory=dict)  # (upload_id, modality) -> boxes
    unmatched: list[str] = field(default_factory=list)  # file names that match no stored pair

    @property
    def pairs(self) -> int:
        return len({uid for uid, _ in self.labels})


def _modalities(requested: str, path: str) -> tuple[str, ...]:
    if requested == "all":
        return MODALITIES
    if requested != "auto":
        return (requested,)
    parts = {p.lower() for p in PurePosixPath(path.replace("\\", "/")).parts[:-1]}
    for m in MODALITIES:
        if m in parts:
            return (m,)
    if "thermal" in parts:
        return ("infrared",)
    return MODALITIES


def _stem(path: str) -> str:
    return PurePosixPath(path.replace("\\", "/")).name.split(".")[0]


def _class_index(names: list[str], name: str, what: str) -> int:
    if name not in names:
        raise UserError(f"{what}: class {name!r} is not one of the pair's classes {names}")
    return names.index(name)


def parse_coco(raw: bytes, meta: MetadataStore, modality: str) -> ImportResult:
    try:
        coco = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UserError(f"COCO file is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list) for k in ("images", "annotations",
                                                                                       "categories")):
        raise UserError("COCO file must be an object with lists 'images', 'annotations' and 'categories'")
    try:
        categories = {int(c["id"]): str(c["name"]) for c in coco["categories"]}
        by_image: dict[int, list] = {}
        for a in coco["annotations"]:
            by_image.setdefault(int(a["image_id"]), []).append(a)
        result = ImportResult()
        for img in coco["images"]:
            file_name = str(img["file_name"])
            uid = _stem(file_name)
            record = meta.get_pair(uid) if _UPLOAD_ID.match(uid) else None
            if record is None:
                result.unmatched.append(file_name)
                continue
            names = json.loads(record.manifest_json)["class_names"]
            w = float(img.get("width") or record.width)
            h = float(img.get("height") or record.height)
            boxes = []
            for a in by_image.get(int(img["id"]), []):
                x, y, bw, bh = (float(v) for v in a["bbox"])
                if bw <= 0 or bh <= 0:
                    continue
                cat = categories.get(int(a["category_id"]))
                if cat is None:
                    raise UserError(f"COCO annotation {a.get('id')} has unknown category_id {a['category_id']}")
                x1, y1 = max(0.0, x / w), max(0.0, y / h)
                x2, y2 = min(1.0, (x + bw) / w), min(1.0, (y + bh) / h)
                boxes.append([_class_index(names, cat, file_name), round((x1 + x2) / 2, 6), round((y1 + y2) / 2, 6),
                              round(x2 - x1, 6), round(y2 - y1, 6)])
            for m in _modalities(modality, file_name):
                result.labels[(uid, m)] = boxes
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"COCO file is malformed: {type(exc).__name__}: {exc}") from None
    return result


def _parse_yolo_lines(text: str, what: str, n_file_classes: int | None) -> list[list]:
    boxes = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise UserError(f"{what}:{lineno}: expected 'class cx cy w h', got {line.strip()!r}")
        try:
            cid = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise UserError(f"{what}:{lineno}: not numbers: {line.strip()!r}") from None
        if cid < 0 or (n_file_classes is not None and cid >= n_file_classes):
            raise UserError(f"{what}:{lineno}: class id {cid} out of range")
        if not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
            raise UserError(f"{what}:{lineno}: coordinates must be normalised to [0, 1]")
        boxes.append([cid, cx, cy, w, h])
    return boxes


def parse_yolo_files(entries: dict[str, bytes], meta: MetadataStore, modality: str,
                     file_names: list[str] | None = None) -> ImportResult:
    """YOLO label files by path (stem = upload id); ``file_names``: the class list their ids index."""
    result = ImportResult()
    for path, raw in entries.items():
        uid = _stem(path)
        record = meta.get_pair(uid) if _UPLOAD_ID.match(uid) else None
        if record is None:
            result.unmatched.append(path)
            continue
        boxes = _parse_yolo_lines(raw.decode("utf-8", "replace"), path, len(file_names) if file_names else None)
        names = json.loads(record.manifest_json)["class_names"]
        if file_names:
            boxes = [[_class_index(names, file_names[b[0]], path), *b[1:]] for b in boxes]
        else:
            bad = [b[0] for b in boxes if b[0] >= len(names)]
            if bad:
                raise UserError(f"{path}: class id {bad[0]} out of range for {len(names)} classes "
                                "(add a classes.txt to the zip to map by name)")
        for m in _modalities(modality, path):
            result.labels[(uid, m)] = boxes
    return result


def parse_yolo_zip(raw: bytes, meta: MetadataStore, modality: str) -> ImportResult:
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile:
        raise UserError("YOLO labels must be a zip of <upload_id>.txt files") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > MAX_YOLO_FILES:
            raise UserError(f"YOLO zip holds more than {MAX_YOLO_FILES} files")
        class_file = next((i for i in infos if PurePosixPath(i.filename).name == "classes.txt"), None)
        file_names = None
        if class_file is not None:
            file_names = parse_class_names(zf.read(class_file).decode("utf-8", "replace"))
        entries = {}
        for info in infos:
            if not info.filename.endswith(".txt") or info is class_file:
                continue
            if info.file_size > 10 << 20:
                raise UserError(f"{info.filename}: label file larger than 10 MiB")
            entries[info.filename] = zf.read(info)
    return parse_yolo_files(entries, meta, modality, file_names)


def detect_format(raw: bytes, source: str = "") -> str:
    if raw.startswith(b"PK\x03\x04"):
        return "yolo"
    if raw.lstrip()[:1] == b"{":
        return "coco"
    if source.endswith(".txt") and _UPLOAD_ID.match(_stem(source)):
        return "yolo"
    raise UserError("labels file is neither COCO JSON, a zip of YOLO .txt files, nor one <upload_id>.txt")


def import_labels(raw: bytes, meta: MetadataStore, *, fmt: str = "auto", modality: str = "auto",
                  source: str = "import") -> ImportResult:
    """Parse and store labels; raises UserError on malformed input (nothing is stored then)."""
    if modality not in MODALITY_CHOICES:
        raise UserError(f"modality must be one of {list(MODALITY_CHOICES)}, got {modality!r}")
    fmt = detect_format(raw, source) if fmt == "auto" else fmt
    if fmt == "coco":
        result = parse_coco(raw, meta, modality)
    elif fmt == "yolo" and not raw.startswith(b"PK\x03\x04"):
        result = parse_yolo_files({source: raw}, meta, modality)  # one <upload_id>.txt
    elif fmt == "yolo":
        result = parse_yolo_zip(raw, meta, modality)
    else:
        raise UserError(f"format must be auto, coco or yolo, got {fmt!r}")
    if result.labels:
        meta.set_labels(result.labels, source=source)
    return result
