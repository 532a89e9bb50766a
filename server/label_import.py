"""Import labels back from a labelling tool, per modality, all or nothing.

Accepted (one file, or a zip holding any mix of them):

* **COCO JSON** (boxes, polygons, RLE masks), including CVAT's "COCO 1.0" export zip
  (``annotations/instances_<subset>.json``, ``images/<subset>/...``).
* **Label Studio JSON export** (a list of tasks with ``annotations``): ``rectanglelabels``,
  ``polygonlabels`` and ``brushlabels`` (Label Studio's own brush RLE).
* **YOLO txt** (``<upload_id>.txt``, a ``classes.txt`` maps ids by name).
* **PNG masks** (``<upload_id>.png``, 8-bit class ids; a ``classes.txt`` or
  ``segmentation_classes.txt`` maps ids by name).

Images are matched to pairs by file stem ``<upload_id>.<ext>`` (the names the export uses); Label
Studio tasks by ``data.upload_id`` (the export writes it), else by an image URL's stem.
``modality`` is ``visible``, ``infrared``, ``fusion`` or ``all`` (one set used for all three);
``auto`` takes it from the file path (a ``visible``/``infrared``/``thermal``/``fusion`` folder) or,
for Label Studio, from the image a region was drawn on (``to_name`` ``visible`` / ``thermal``).

What is stored depends on the pair's task:

* detection pairs: boxes, YOLO-style ``[class_id, cx, cy, w, h]`` normalised, class ids into the
  pair's own ``class_names`` (matched by name); a polygon or brush region gives its bounding box.
* segmentation pairs: a class-id mask (``uint8``, the pair's image size, id = index into the pair's
  ``class_names``, 0 = background where nothing is drawn), encoded as PNG (:mod:`msmine.masks`),
  put in the blob store (content-addressed) and referenced from the label as ``mask``; regions are
  painted in file order (a later region wins). Every shape counts: rectangles, polygons, RLE,
  brushes.

Bad input (malformed files, a mask of the wrong size, a class the pair's model does not have, a
detection pair given a PNG mask) raises :class:`UserError` before anything is written.
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from msmine.errors import UserError
from msmine.layout import parse_class_names
from msmine.masks import decode_mask_png, encode_mask_png
from msmine.server import mask_formats as mf
from msmine.server.blobs import BlobStore
from msmine.server.metadata import MetadataStore
from msmine.server.records import MODALITIES, PairRecord

__all__ = ["FORMATS", "MODALITY_CHOICES", "ImportResult", "detect_format", "import_labels", "parse_class_names"]

log = logging.getLogger(__name__)

MODALITY_CHOICES = ("auto", "all", *MODALITIES)
FORMATS = ("auto", "coco", "yolo", "label-studio", "png", "zip")
_UPLOAD_ID = re.compile(r"^[0-9a-f]{64}$")
_UPLOAD_ID_IN = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
MAX_ZIP_FILES = 200_000
MAX_MEMBER_BYTES = {".txt": 10 << 20, ".png": 16 << 20, ".json": 512 << 20}
CLASS_FILES = ("classes.txt", "segmentation_classes.txt")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LS_SHAPES = ("rectanglelabels", "polygonlabels", "brushlabels")
LS_IMAGE_MODALITY = {"visible": "visible", "thermal": "infrared", "infrared": "infrared", "fusion": "fusion"}


@dataclass
class ImportResult:
    labels: dict[tuple[str, str], list] = field(default_factory=dict)  # (upload_id, modality) -> boxes
    masks: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (upload_id, modality) -> class-id PNG
    unmatched: list[str] = field(default_factory=list)  # file names / tasks that match no stored pair
    skipped: list[str] = field(default_factory=list)  # Label Studio tasks without a finished annotation

    @property
    def pairs(self) -> int:
        return len({uid for uid, _ in self.labels} | {uid for uid, _ in self.masks})

    @property
    def label_sets(self) -> int:
        return len(set(self.labels) | set(self.masks))

    def merge(self, other: ImportResult) -> None:
        self.labels.update(other.labels)
        self.masks.update(other.masks)
        self.unmatched.extend(other.unmatched)
        self.skipped.extend(other.skipped)


@dataclass
class _Pair:
    record: PairRecord
    names: list[str]

    @property
    def segment(self) -> bool:
        return self.record.task == "segment"

    @property
    def size(self) -> tuple[int, int]:  # width, height
        return self.record.width, self.record.height

    def empty_mask(self) -> np.ndarray:
        return np.zeros((self.record.height, self.record.width), np.uint8)


class _Pairs:
    """Stored pairs by upload id, looked up once each."""

    def __init__(self, meta: MetadataStore) -> None:
        self.meta = meta
        self.cache: dict[str, _Pair | None] = {}

    def get(self, uid: str) -> _Pair | None:
        if not _UPLOAD_ID.match(uid):
            return None
        if uid not in self.cache:
            record = self.meta.get_pair(uid)
            self.cache[uid] = None if record is None else _Pair(record, json.loads(record.manifest_json)["class_names"])
        return self.cache[uid]


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
    """The upload id a file name carries: its stem, or else the one 64-hex token in the name (tools
    prefix uploads, e.g. Label Studio's ``5f2c1a9e-<name>``)."""
    name = PurePosixPath(path.replace("\\", "/")).name
    stem = name.split(".")[0]
    if not _UPLOAD_ID.match(stem):
        found = _UPLOAD_ID_IN.findall(name)
        if len(found) == 1:
            return found[0]
    return stem


# The import's class map (file class name, lower-cased -> pair class name), set by import_labels.
_CLASS_MAP: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("label_class_map", default=None)


def parse_class_map(spec: str | None) -> dict[str, str]:
    """``"pedestrian=person,van=car"`` -> {file class: pair class}; UserError naming a bad entry."""
    mapping = {}
    for item in (spec or "").split(","):
        if item.strip():
            source, sep, target = item.partition("=")
            if not sep or not source.strip() or not target.strip():
                raise UserError(f"bad class map entry {item!r}: expected FILE_CLASS=MODEL_CLASS (e.g. pedestrian=person)")
            mapping[source.strip()] = target.strip()
    return mapping


def _class_index(names: list[str], name: str, what: str) -> int:
    name = (_CLASS_MAP.get() or {}).get(name.lower(), name)
    if name not in names:
        raise UserError(f"{what}: class {name!r} is not one of the pair's classes {names}")
    return names.index(name)


def _box_from_pixels(cid: int, x: float, y: float, bw: float, bh: float, w: float, h: float) -> list | None:
    x1, y1 = max(0.0, x / w), max(0.0, y / h)
    x2, y2 = min(1.0, (x + bw) / w), min(1.0, (y + bh) / h)
    if x2 <= x1 or y2 <= y1:
        return None
    return [cid, round((x1 + x2) / 2, 6), round((y1 + y2) / 2, 6), round(x2 - x1, 6), round(y2 - y1, 6)]


def _store(result: ImportResult, uid: str, modalities: tuple[str, ...], boxes: list | None,
           mask: np.ndarray | None) -> None:
    png = encode_mask_png(mask) if mask is not None else None
    for m in modalities:
        if png is not None:
            result.masks[(uid, m)] = png
        else:
            result.labels[(uid, m)] = boxes or []


# COCO ----------------------------------------------------------------------------------------


def _check_image_size(pair: _Pair, img: dict, what: str) -> tuple[int, int]:
    w, h = img.get("width"), img.get("height")
    if not w or not h:
        return pair.size
    if (int(w), int(h)) != pair.size:
        raise UserError(f"{what}: the image is {int(w)}x{int(h)} in the COCO file, the pair's is "
                        f"{pair.size[0]}x{pair.size[1]} (masks must be drawn on the exported image)")
    return pair.size


def _coco_region(a: dict, w: int, h: int) -> np.ndarray | None:
    seg = a.get("segmentation")
    if isinstance(seg, dict):
        return mf.coco_rle_decode(seg, h, w)
    if isinstance(seg, list) and seg and seg != [[]]:
        return mf.region_from_polygons(seg, h, w)
    return None


def parse_coco(raw: bytes, meta: MetadataStore, modality: str, source: str = "", pairs: _Pairs | None = None
               ) -> ImportResult:
    try:
        coco = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UserError(f"COCO file is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list) for k in ("images", "annotations",
                                                                                       "categories")):
        raise UserError("COCO file must be an object with lists 'images', 'annotations' and 'categories'")
    pairs = pairs or _Pairs(meta)
    try:
        categories = {int(c["id"]): str(c["name"]) for c in coco["categories"]}
        by_image: dict[int, list] = {}
        for a in coco["annotations"]:
            by_image.setdefault(int(a["image_id"]), []).append(a)
        result = ImportResult()
        for img in coco["images"]:
            file_name = str(img["file_name"])
            pair = pairs.get(_stem(file_name))
            if pair is None:
                result.unmatched.append(file_name)
                continue
            where = f"{source or 'COCO'}: {file_name}"
            w = float(img.get("width") or pair.record.width)
            h = float(img.get("height") or pair.record.height)
            boxes, mask = [], None
            if pair.segment:
                mw, mh = _check_image_size(pair, img, where)
                mask = pair.empty_mask()
            for a in by_image.get(int(img["id"]), []):
                cat = categories.get(int(a["category_id"]))
                if cat is None:
                    raise UserError(f"COCO annotation {a.get('id')} has unknown category_id {a['category_id']}")
                cid = _class_index(pair.names, cat, file_name)
                if mask is not None:
                    try:
                        region = _coco_region(a, mw, mh)
                    except UserError as exc:
                        raise UserError(f"{where}: annotation {a.get('id')}: {exc}") from None
                    if region is None:  # a box in a segmentation task: its rectangle
                        x, y, bw, bh = (float(v) for v in a["bbox"])
                        region = np.zeros((mh, mw), bool)
                        region[max(0, round(y)):max(0, round(y + bh)), max(0, round(x)):max(0, round(x + bw))] = True
                    mf.paint(mask, region, cid)
                    continue
                x, y, bw, bh = (float(v) for v in a["bbox"])
                if bw <= 0 or bh <= 0:
                    continue
                box = _box_from_pixels(cid, x, y, bw, bh, w, h)
                if box is not None:
                    boxes.append(box)
            _store(result, pair.record.upload_id, _modalities(modality, file_name), boxes, mask)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"COCO file is malformed: {type(exc).__name__}: {exc}") from None
    return result


# Label Studio --------------------------------------------------------------------------------


def _ls_task_pair(task: dict, pairs: _Pairs) -> tuple[_Pair | None, str]:
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    uid = data.get("upload_id")
    if isinstance(uid, str) and _UPLOAD_ID.match(uid):
        return pairs.get(uid), uid
    for value in data.values():
        if isinstance(value, str):
            for found in _UPLOAD_ID_IN.findall(value):
                pair = pairs.get(found)
                if pair is not None:
                    return pair, value
    name = next((v for v in data.values() if isinstance(v, str)), f"task {task.get('id')}")
    return None, name


def _ls_annotation(task: dict) -> dict | None:
    """The task's latest finished annotation (cancelled ones skipped), None when there is none."""
    anns = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not anns:
        return None
    return max(anns, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))


def _ls_modalities(task: dict, to_name: str, modality: str) -> tuple[str, ...]:
    if modality != "auto":
        return _modalities(modality, "")
    if to_name in LS_IMAGE_MODALITY:
        return (LS_IMAGE_MODALITY[to_name],)
    data = task.get("data") or {}
    path = data.get(to_name) if isinstance(data.get(to_name), str) else data.get("image", "")
    path = str(path).split("?d=")[-1]
    return _modalities("auto", path)


def _ls_region(kind: str, value: dict, pair: _Pair, r: dict, where: str) -> tuple[np.ndarray | None, list | None]:
    """One Label Studio result -> (region for a segmentation pair, normalised [x1, y1, x2, y2] box)."""
    w, h = pair.size
    ow, oh = r.get("original_width"), r.get("original_height")
    if kind != "rectanglelabels" and ow and oh and (int(ow), int(oh)) != (w, h):
        raise UserError(f"{where}: the mask was drawn on a {int(ow)}x{int(oh)} image, the pair's is {w}x{h}")
    if kind == "rectanglelabels":
        x0, y0 = float(value["x"]) * w / 100.0, float(value["y"]) * h / 100.0
        pw, ph = float(value["width"]) * w / 100.0, float(value["height"]) * h / 100.0
        angle = math.radians(float(value.get("rotation") or 0.0))
        cos, sin = math.cos(angle), math.sin(angle)
        corners = [(0.0, 0.0), (pw, 0.0), (pw, ph), (0.0, ph)]  # Label Studio rotates about the top-left corner
        px = [x0 + cx * cos - cy * sin for cx, cy in corners]
        py = [y0 + cx * sin + cy * cos for cx, cy in corners]
        if not pair.segment:
            return None, [min(px) / w, min(py) / h, max(px) / w, max(py) / h]
        if angle == 0.0:
            region = np.zeros((h, w), bool)
            region[max(0, round(y0)):max(0, round(y0 + ph)), max(0, round(x0)):max(0, round(x0 + pw))] = True
            return region, None
        return mf.region_from_polygons([[v for xy in zip(px, py) for v in xy]], h, w), None
    if kind == "polygonlabels":
        poly = mf.polygon_from_ls_points(value.get("points"), h, w)
        if not pair.segment:
            xy = np.asarray(poly).reshape(-1, 2)
            return None, [xy[:, 0].min() / w, xy[:, 1].min() / h, xy[:, 0].max() / w, xy[:, 1].max() / h]
        return mf.region_from_polygons([poly], h, w), None
    if value.get("format", "rle") != "rle" or "rle" not in value:
        raise UserError(f"{where}: a brush result needs 'format': 'rle' and 'rle'")
    region = mf.region_from_brush(value["rle"], h, w)
    if pair.segment:
        return region, None
    bbox = mf.bbox_of(region)
    if bbox is None:
        return None, None
    x, y, bw, bh = bbox
    return None, [x / w, y / h, (x + bw) / w, (y + bh) / h]


def parse_label_studio(raw: bytes, meta: MetadataStore, modality: str, source: str = "",
                       pairs: _Pairs | None = None) -> ImportResult:
    """A Label Studio JSON export (``[{"data": ..., "annotations": [{"result": [...]}]}, ...]``)."""
    try:
        tasks = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UserError(f"Label Studio file is not valid JSON: {type(exc).__name__}") from None
    if isinstance(tasks, dict) and "data" in tasks:
        tasks = [tasks]
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise UserError("a Label Studio export must be a JSON list of tasks (export as 'JSON', not 'JSON-MIN')")
    if tasks and all("data" not in t and "annotations" not in t for t in tasks):
        raise UserError("these are not Label Studio tasks (no 'data' / 'annotations'); export the project as "
                        "'JSON', not 'JSON-MIN' or CSV")
    pairs = pairs or _Pairs(meta)
    result = ImportResult()
    try:
        for task in tasks:
            pair, name = _ls_task_pair(task, pairs)
            if pair is None:
                result.unmatched.append(name)
                continue
            ann = _ls_annotation(task)
            if ann is None:
                result.skipped.append(name)
                continue
            uid = pair.record.upload_id
            where = f"{source or 'Label Studio'}: task {task.get('id', name)}"
            per_modality: dict[str, tuple[list, np.ndarray | None]] = {}
            for r in ann.get("result") or []:
                kind = r.get("type")
                if kind not in LS_SHAPES:
                    continue
                value = r.get("value") or {}
                labels = value.get(kind) or []
                if not labels:
                    raise UserError(f"{where}: a {kind} result without a label")
                cid = _class_index(pair.names, str(labels[0]), where)
                region, box = _ls_region(kind, value, pair, r, where)
                for m in _ls_modalities(task, str(r.get("to_name", "")), modality):
                    boxes, mask = per_modality.setdefault(m, ([], pair.empty_mask() if pair.segment else None))
                    if mask is not None and region is not None:
                        mf.paint(mask, region, cid)
                    elif box is not None:
                        x1, y1, x2, y2 = (min(1.0, max(0.0, float(v))) for v in box)
                        if x2 > x1 and y2 > y1:
                            boxes.append([cid, round((x1 + x2) / 2, 6), round((y1 + y2) / 2, 6),
                                          round(x2 - x1, 6), round(y2 - y1, 6)])
            if not per_modality:  # a finished annotation with no region: labelled, nothing in it
                for m in _ls_modalities(task, "", modality):
                    per_modality[m] = ([], pair.empty_mask() if pair.segment else None)
            for m, (boxes, mask) in per_modality.items():
                _store(result, uid, (m,), boxes, mask)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"Label Studio file is malformed: {type(exc).__name__}: {exc}") from None
    return result


# YOLO ----------------------------------------------------------------------------------------


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
                     file_names: list[str] | None = None, pairs: _Pairs | None = None) -> ImportResult:
    """YOLO label files by path (stem = upload id); ``file_names``: the class list their ids index."""
    pairs = pairs or _Pairs(meta)
    result = ImportResult()
    for path, raw in entries.items():
        pair = pairs.get(_stem(path))
        if pair is None:
            result.unmatched.append(path)
            continue
        boxes = _parse_yolo_lines(raw.decode("utf-8", "replace"), path, len(file_names) if file_names else None)
        names = pair.names
        if file_names:
            boxes = [[_class_index(names, file_names[b[0]], path), *b[1:]] for b in boxes]
        else:
            bad = [b[0] for b in boxes if b[0] >= len(names)]
            if bad:
                raise UserError(f"{path}: class id {bad[0]} out of range for {len(names)} classes "
                                "(add a classes.txt to the zip to map by name)")
        for m in _modalities(modality, path):
            result.labels[(pair.record.upload_id, m)] = boxes
    return result


# PNG masks -----------------------------------------------------------------------------------


def parse_png_files(entries: dict[str, bytes], meta: MetadataStore, modality: str,
                    file_names: list[str] | None = None, pairs: _Pairs | None = None) -> ImportResult:
    """Class-id PNGs by path (stem = upload id); ``file_names``: the class list their ids index
    (else they are the pair's own class ids)."""
    pairs = pairs or _Pairs(meta)
    result = ImportResult()
    for path, raw in entries.items():
        pair = pairs.get(_stem(path))
        if pair is None:
            result.unmatched.append(path)
            continue
        if not pair.segment:
            raise UserError(f"{path}: pair {pair.record.upload_id[:12]}... comes from a detection model; "
                            "PNG masks are labels for segmentation pairs")
        try:
            mask = decode_mask_png(raw, expected_size=pair.size, num_classes=len(file_names or pair.names))
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
        if file_names:
            lut = np.array([_class_index(pair.names, n, path) for n in file_names], np.uint8)
            mask = lut[mask]
        _store(result, pair.record.upload_id, _modalities(modality, path), None, mask)
    return result


# zip and dispatch ----------------------------------------------------------------------------


def _json_kind(raw: bytes) -> str:
    head = raw.lstrip()[:1]
    if head == b"[":
        return "label-studio"
    if head == b"{":
        try:
            obj = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return "coco"  # parse_coco reports it
        return "label-studio" if isinstance(obj, dict) and "data" in obj and "images" not in obj else "coco"
    raise UserError("a .json labels file must be COCO (an object) or a Label Studio export (a list)")


def parse_zip(raw: bytes, meta: MetadataStore, modality: str, pairs: _Pairs | None = None) -> ImportResult:
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile:
        raise UserError("labels zip is not a valid zip file") from None
    pairs = pairs or _Pairs(meta)
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir() and not PurePosixPath(i.filename).name.startswith(".")]
        if len(infos) > MAX_ZIP_FILES:
            raise UserError(f"labels zip holds more than {MAX_ZIP_FILES} files")
        by_kind: dict[str, dict[str, bytes]] = {".txt": {}, ".png": {}, ".json": {}}
        class_names: dict[str, list[str]] = {}
        for info in infos:
            name = PurePosixPath(info.filename).name
            suffix = PurePosixPath(name).suffix.lower()
            if suffix not in by_kind:
                continue
            if suffix == ".png" and (not _UPLOAD_ID.match(_stem(name))
                                     or "images" in PurePosixPath(info.filename).parts[:-1]):
                continue  # the pictures themselves (CVAT's images/<subset>/, the export's images/<modality>/)
            if info.file_size > MAX_MEMBER_BYTES[suffix]:
                raise UserError(f"{info.filename}: larger than {MAX_MEMBER_BYTES[suffix] >> 20} MiB")
            if name in CLASS_FILES:
                class_names[name] = parse_class_names(zf.read(info).decode("utf-8", "replace"))
                continue
            by_kind[suffix][info.filename] = zf.read(info)
    if not any(by_kind.values()):
        raise UserError("labels zip holds no .json (COCO, Label Studio), <upload_id>.txt (YOLO) or "
                        "<upload_id>.png (masks)")
    result = ImportResult()
    for path, data in sorted(by_kind[".json"].items()):
        kind = _json_kind(data)
        if kind == "coco":
            part = parse_coco(data, meta, modality if modality != "auto" else _zip_modality(path),
                              source=path, pairs=pairs)
        else:
            part = parse_label_studio(data, meta, modality, source=path, pairs=pairs)
        result.merge(part)
    if by_kind[".txt"]:
        result.merge(parse_yolo_files(by_kind[".txt"], meta, modality, class_names.get("classes.txt"), pairs))
    if by_kind[".png"]:
        names = class_names.get("segmentation_classes.txt") or class_names.get("classes.txt")
        result.merge(parse_png_files(by_kind[".png"], meta, modality, names, pairs))
    return result


def _zip_modality(path: str) -> str:
    """A COCO file (uploaded, or inside a zip): its folder or file name may say the modality
    (``instances_visible.json``, ``infrared/instances_default.json``), else ``auto`` (the images' paths)."""
    p = PurePosixPath(path)
    words = {w.lower() for w in (*p.parts[:-1], *re.split(r"[_.\-]", p.stem))}
    for m in MODALITIES:
        if m in words:
            return m
    return "infrared" if "thermal" in words else "auto"


def detect_format(raw: bytes, source: str = "") -> str:
    if raw.startswith(b"PK\x03\x04"):
        return "zip"
    if raw.startswith(PNG_MAGIC):
        return "png"
    head = raw.lstrip()[:1]
    if head == b"[":
        return "label-studio"
    if head == b"{":
        return _json_kind(raw)
    if source.endswith(".txt") and _UPLOAD_ID.match(_stem(source)):
        return "yolo"
    raise UserError("labels file is neither COCO JSON, a zip (COCO, CVAT, YOLO, PNG masks), a Label Studio "
                    "JSON export, one <upload_id>.txt nor one <upload_id>.png")


def parse_labels(raw: bytes, meta: MetadataStore, *, fmt: str = "auto", modality: str = "auto",
                 source: str = "import") -> ImportResult:
    """Parse (and check) labels without storing anything."""
    if modality not in MODALITY_CHOICES:
        raise UserError(f"modality must be one of {list(MODALITY_CHOICES)}, got {modality!r}")
    if fmt not in FORMATS:
        raise UserError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    fmt = detect_format(raw, source) if fmt == "auto" else fmt
    is_zip = raw.startswith(b"PK\x03\x04")
    if fmt == "zip" or (is_zip and fmt in ("yolo", "png", "coco")):
        return parse_zip(raw, meta, modality)
    if fmt == "coco":  # instances_visible.json, as the export names it, is the visible set
        return parse_coco(raw, meta, modality if modality != "auto" else _zip_modality(source), source=source)
    if fmt == "label-studio":
        return parse_label_studio(raw, meta, modality, source=source)
    if fmt == "png":
        return parse_png_files({source: raw}, meta, modality)  # one <upload_id>.png
    if fmt == "yolo":
        return parse_yolo_files({source: raw}, meta, modality)  # one <upload_id>.txt
    raise UserError(f"format {fmt!r} does not fit this file")


def _refuse_missing(result: ImportResult) -> None:
    """Names that carry an upload id this server does not hold: labels for pairs that do not exist
    (another server's or project's export) -- refuse the whole import."""
    missing = [n for n in result.unmatched if _UPLOAD_ID_IN.search(n.replace("\\", "/"))]
    if missing:
        raise UserError(f"{len(missing)} labelled image(s) name pairs this server does not hold (first: "
                        f"{missing[0]}); an export of another server or project? Nothing was imported")


def import_labels(raw: bytes, meta: MetadataStore, *, blobs: BlobStore | None = None, fmt: str = "auto",
                  modality: str = "auto", source: str = "import", class_map: dict[str, str] | None = None
                  ) -> ImportResult:
    """Parse, check, then store labels: mask PNGs into ``blobs``, then every label set in one
    transaction. Raises UserError on bad input, and then nothing is stored. ``class_map`` names the
    pair class of a file class by name ({"pedestrian": "person"}; other names match as they are)."""
    token = _CLASS_MAP.set({k.lower(): v for k, v in (class_map or {}).items()})
    try:
        result = parse_labels(raw, meta, fmt=fmt, modality=modality, source=source)
    finally:
        _CLASS_MAP.reset(token)
    _refuse_missing(result)
    if result.masks and blobs is None:
        raise UserError("these labels hold masks, and this import has no blob store to keep them in")
    shas = {key: blobs.put(png) for key, png in result.masks.items()} if result.masks else {}
    if result.labels or shas:
        meta.set_labels(result.labels, source=source, masks=shas)
        log.info("imported %d label sets (%d masks) for %d pairs from %s", result.label_sets, len(shas),
                 result.pairs, source)
    return result
