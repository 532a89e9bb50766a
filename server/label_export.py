"""Export a labelling batch as a zip: images, COCO JSON with one branch's predictions as
pre-annotations (CVAT "COCO 1.0", Label Studio's COCO import), Label Studio tasks with predictions
and Label Studio labelling configs.

Zip layout::

    README.txt
    batch.json                              batch id, branch, filters, pairs with scores and devices
    images/visible/<upload_id>.<jpg|png>
    images/infrared/<upload_id>.<jpg|png>   the thermal image
    images/heatmap/<upload_id>.<jpg|png>    the inconsistency heat map (for reference)
    annotations/instances_visible.json      COCO, file_name "<upload_id>.<ext>": boxes (detection
    annotations/instances_infrared.json       pairs) and polygons, one per outer contour (segmentation)
    annotations/instances_visible_rle.json  the same with exact masks as RLE (iscrowd 1, uncompressed
    annotations/instances_infrared_rle.json   counts, as CVAT writes masks)
    label_studio/config.xml                 labelling config: visible and thermal side by side
    label_studio/tasks.json                 one task per pair (data.visible, data.thermal) for config.xml
    label_studio/config_single.xml          labelling config for one image (data.image)
    label_studio/tasks_visible.json         one task per pair and image, for config_single.xml
    label_studio/tasks_infrared.json

Segmentation pairs (task ``segment``): the chosen branch's predicted class-id mask; class id 0 is the
background and is not annotated, so the segmentation classes are the pair's ``class_names[1:]``.
In Label Studio tasks masks are polygons (``polygonlabels``, editable vertices) or, with
``ls_masks="brush"``, brushes (``brushlabels``, Label Studio's RLE, exact).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from msmine.masks import decode_mask_png
from msmine.server import mask_formats as mf
from msmine.server.blobs import BlobStore
from msmine.server.metadata import MetadataStore
from msmine.server.records import BatchRecord

EXT = {"image/png": "png", "image/jpeg": "jpg"}
EXPORT_MODALITIES = {"visible": "visible", "infrared": "thermal"}  # modality -> wire file part
LS_IMAGES = {"visible": "visible", "infrared": "thermal"}  # modality -> image name in config.xml
BRANCHES = ("fused", "visible", "thermal")
PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
           "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#800000", "#aaffc3", "#808000")

README = """msmine labelling batch {batch_id} (pre-annotations: the {branch} branch's predictions)

CVAT: create a task from images/visible/ (or images/infrared/), then Actions > Upload annotations >
"COCO 1.0" with annotations/instances_visible.json (or instances_infrared.json; the *_rle.json files
carry segmentation masks exactly, as RLE masks). Correct them and export as "COCO 1.0"; the export
zip (annotations/instances_default.json) is imported back as it is.

Label Studio: create a project with the labelling config label_studio/config.xml (visible and
thermal image side by side), serve this folder as local storage and import label_studio/tasks.json
(image URLs /data/local-files/?d=images/<visible|infrared>/<id>.<ext>). For one image per task use
config_single.xml with tasks_visible.json or tasks_infrared.json. Export the project as "JSON".

Import back: POST /api/v1/labels with the COCO JSON, the CVAT zip, the Label Studio JSON export, a
zip of YOLO <upload_id>.txt or of <upload_id>.png class-id masks, e.g.
  curl -H "Authorization: Bearer $TOKEN" -F file=@instances_default.json \\
       "$SERVER/api/v1/labels?modality=visible"
(modality=visible|infrared|fusion|all|auto).
"""


def _segmentation_names(manifest: dict) -> list[str]:
    names = manifest["class_names"]
    return names[1:] if manifest.get("task") == "segment" else names


def merged_class_names(manifests: list[dict]) -> list[str]:
    """The batch's label names: detection classes, and segmentation classes without the background."""
    names: list[str] = []
    for m in manifests:
        for n in _segmentation_names(m):
            if n not in names:
                names.append(n)
    return names


def _file_name(m: dict, part: str) -> str:
    return f"{m['upload_id']}.{EXT[m['files'][part]['media_type']]}"


def _coco(pairs: list[dict], part: str, names: list[str], batch_id: str, branch: str,
          masks: dict[str, np.ndarray], rle: bool) -> dict:
    images, annotations = [], []

    def add(image_id: int, category: int, bbox: list[float], area: float, segmentation, score, crowd: int) -> None:
        ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
               "segmentation": segmentation, "area": round(float(area), 2),
               "bbox": [round(float(v), 2) for v in bbox], "iscrowd": crowd,
               "attributes": {"occluded": False}}
        if score is not None:
            ann["score"] = score
            ann["attributes"]["score"] = score
        annotations.append(ann)

    for image_id, m in enumerate(pairs, start=1):
        w, h = m["image_size"]
        images.append({"id": image_id, "file_name": _file_name(m, part), "width": w, "height": h,
                       "license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0})
        mask = masks.get(m["upload_id"])
        if mask is not None:
            for cid, region in mf.class_regions(mask).items():
                category = names.index(m["class_names"][cid]) + 1
                if rle:
                    add(image_id, category, list(mf.bbox_of(region)), region.sum(), mf.coco_rle_encode(region), None, 1)
                    continue
                for poly in mf.polygons_from_region(region):
                    xy = np.asarray(poly).reshape(-1, 2)
                    x0, y0 = xy.min(0)
                    x1, y1 = xy.max(0)
                    area = mf.region_from_polygons([poly], h, w).sum()
                    add(image_id, category, [x0, y0, x1 - x0 + 1, y1 - y0 + 1], area, [poly], None, 0)
            continue
        for det in m["predictions"].get(branch, []):
            x1, y1, x2, y2 = det["box"]
            bw, bh = (x2 - x1) * w, (y2 - y1) * h
            add(image_id, names.index(m["class_names"][det["class_id"]]) + 1, [x1 * w, y1 * h, bw, bh], bw * bh, [],
                det["score"], 0)
    return {
        "info": {"description": f"msmine labelling batch {batch_id} ({branch} predictions)", "contributor": "msmine",
                 "version": "1.0", "year": "", "url": "", "date_created": ""},
        "licenses": [{"id": 0, "name": "", "url": ""}],
        "categories": [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(names)],
        "images": images,
        "annotations": annotations,
    }


def _ls_results(m: dict, branch: str, mask: np.ndarray | None, image: str, suffix: str, ls_masks: str) -> list[dict]:
    w, h = m["image_size"]
    common = {"to_name": image, "original_width": w, "original_height": h, "image_rotation": 0}
    result = []
    if mask is not None:
        for cid, region in mf.class_regions(mask).items():
            name = m["class_names"][cid]
            if ls_masks == "brush":
                result.append({"id": f"b{cid}{suffix}", "type": "brushlabels", "from_name": f"brush{suffix}", **common,
                               "value": {"format": "rle", "rle": mf.brush_from_region(region), "brushlabels": [name]}})
                continue
            for i, poly in enumerate(mf.polygons_from_region(region)):
                result.append({"id": f"s{cid}_{i}{suffix}", "type": "polygonlabels", "from_name": f"polygon{suffix}",
                               **common, "value": {"points": mf.ls_points_from_polygon(poly, h, w), "closed": True,
                                                   "polygonlabels": [name]}})
        return result
    for i, det in enumerate(m["predictions"].get(branch, [])):
        x1, y1, x2, y2 = det["box"]
        result.append({"id": f"p{i}{suffix}", "type": "rectanglelabels", "from_name": f"label{suffix}", **common,
                       "score": det["score"],
                       "value": {"x": x1 * 100, "y": y1 * 100, "width": (x2 - x1) * 100, "height": (y2 - y1) * 100,
                                 "rotation": 0, "rectanglelabels": [m["class_names"][det["class_id"]]]}})
    return result


def _label_studio(pairs: list[dict], modality: str, part: str, branch: str, masks: dict[str, np.ndarray],
                  ls_masks: str) -> list[dict]:
    tasks = []
    for m in pairs:
        result = _ls_results(m, branch, masks.get(m["upload_id"]), "image", "", ls_masks)
        tasks.append({
            "data": {"image": f"/data/local-files/?d=images/{modality}/{_file_name(m, part)}", "upload_id": m["upload_id"],
                     "score": m["score"], "device_id": m["device_id"], "modality": modality},
            "predictions": [{"model_version": m["model"]["version"], "score": m["score"], "result": result}],
        })
    return tasks


def _label_studio_pairs(pairs: list[dict], branch: str, masks: dict[str, np.ndarray], ls_masks: str) -> list[dict]:
    tasks = []
    for m in pairs:
        result = []
        for image in LS_IMAGES.values():
            result += _ls_results(m, branch, masks.get(m["upload_id"]), image, f"_{image}", ls_masks)
        data = {image: f"/data/local-files/?d=images/{modality}/{_file_name(m, EXPORT_MODALITIES[modality])}"
                for modality, image in LS_IMAGES.items()}
        tasks.append({
            "data": {**data, "upload_id": m["upload_id"], "score": m["score"], "device_id": m["device_id"]},
            "predictions": [{"model_version": m["model"]["version"], "score": m["score"], "result": result}],
        })
    return tasks


def _controls(names: list[str], image: str, suffix: str, indent: str) -> str:
    """Boxes, polygons and brushes on one image, every label in each (names ``label``, ``polygon``,
    ``brush`` + ``suffix``: what the tasks' predictions and the import use)."""
    labels = "".join(f"{indent}  <Label value={quoteattr(n)} background={quoteattr(PALETTE[i % len(PALETTE)])}/>\n"
                     for i, n in enumerate(names))
    return "".join(f'{indent}<{tag} name="{kind}{suffix}" toName="{image}">\n{labels}{indent}</{tag}>\n'
                   for tag, kind in (("RectangleLabels", "label"), ("PolygonLabels", "polygon"),
                                     ("BrushLabels", "brush")))


def label_studio_config(names: list[str]) -> str:
    """Labelling config for ``tasks.json``: the visible and the thermal image of a pair side by side,
    boxes, polygons and brushes on each (controls ``label_visible``, ``polygon_thermal`` ...)."""
    views = "".join(
        f'    <View style="flex: 1; min-width: 0">\n      <Header value="{title}" size="5"/>\n'
        f'      <Image name="{image}" value="${image}" zoom="true" zoomControl="true"/>\n'
        f"{_controls(names, image, '_' + image, '      ')}    </View>\n"
        for image, title in (("visible", "Visible"), ("thermal", "Thermal")))
    return ('<View>\n  <Header value="Pair $upload_id (score $score, device $device_id)" size="4"/>\n'
            f'  <View style="display: flex; gap: 12px; align-items: flex-start">\n{views}  </View>\n</View>\n')


def label_studio_config_single(names: list[str]) -> str:
    """Labelling config for ``tasks_<modality>.json``: one image (``$image``)."""
    return ('<View>\n  <Header value="Pair $upload_id ($modality, score $score)" size="4"/>\n'
            '  <Image name="image" value="$image" zoom="true" zoomControl="true"/>\n'
            f"{_controls(names, 'image', '', '  ')}</View>\n")


def _predicted_masks(meta: MetadataStore, blobs: BlobStore, manifests: list[dict], branch: str
                     ) -> dict[str, np.ndarray]:
    out = {}
    for m in manifests:
        if m.get("task") != "segment":
            continue
        record = meta.get_pair(m["upload_id"])
        sha = (record.masks if record is not None else {}).get(branch)
        if sha is None:
            continue
        w, h = m["image_size"]
        out[m["upload_id"]] = decode_mask_png(blobs.read(sha), expected_size=(w, h), num_classes=len(m["class_names"]))
    return out


def export_batch(meta: MetadataStore, blobs: BlobStore, batch: BatchRecord, out: Path, branch: str = "fused",
                 ls_masks: str = "polygon") -> Path:
    """Write the batch's zip to ``out`` with ``branch``'s predictions as pre-annotations; returns ``out``."""
    if branch not in BRANCHES:
        raise ValueError(f"branch must be one of {BRANCHES}, got {branch!r}")
    if ls_masks not in ("polygon", "brush"):
        raise ValueError(f"ls_masks must be 'polygon' or 'brush', got {ls_masks!r}")
    manifests = []
    for uid in batch.upload_ids:
        record = meta.get_pair(uid)
        if record is not None:
            manifests.append(json.loads(record.manifest_json))
    names = merged_class_names(manifests)
    masks = _predicted_masks(meta, blobs, manifests, branch)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("README.txt", README.format(batch_id=batch.batch_id, branch=branch))
        zf.writestr("batch.json", json.dumps({
            "batch_id": batch.batch_id, "created_at": batch.created_at, "filters": batch.filters,
            "hamming": batch.hamming, "branch": branch, "class_names": names,
            "pairs": [{"upload_id": m["upload_id"], "device_id": m["device_id"], "score": m["score"],
                       "selection": m.get("selection"), "model_version": m["model"]["version"],
                       "captured_at": m["captured_at"], "task": m.get("task", "detect")} for m in manifests],
        }, indent=1))
        for m in manifests:
            for folder, part in (("visible", "visible"), ("infrared", "thermal"), ("heatmap", "heatmap")):
                info = m["files"][part]
                zf.writestr(zipfile.ZipInfo(f"images/{folder}/{_file_name(m, part)}"), blobs.read(info["sha256"]),
                            compress_type=zipfile.ZIP_STORED)
        for modality, part in EXPORT_MODALITIES.items():
            zf.writestr(f"annotations/instances_{modality}.json",
                        json.dumps(_coco(manifests, part, names, batch.batch_id, branch, masks, rle=False)))
            if masks:
                zf.writestr(f"annotations/instances_{modality}_rle.json",
                            json.dumps(_coco(manifests, part, names, batch.batch_id, branch, masks, rle=True)))
            zf.writestr(f"label_studio/tasks_{modality}.json",
                        json.dumps(_label_studio(manifests, modality, part, branch, masks, ls_masks)))
        zf.writestr("label_studio/tasks.json", json.dumps(_label_studio_pairs(manifests, branch, masks, ls_masks)))
        zf.writestr("label_studio/config.xml", label_studio_config(names))
        zf.writestr("label_studio/config_single.xml", label_studio_config_single(names))
    return out
