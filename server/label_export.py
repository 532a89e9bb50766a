"""Export a labelling batch as a zip: images, COCO JSON with the fused predictions as pre-annotations
(CVAT "COCO 1.0", Label Studio via its COCO import) and Label Studio task JSON with predictions.

Zip layout::

    README.txt
    batch.json                              batch id, filters, pairs with scores and devices
    images/visible/<upload_id>.<jpg|png>
    images/infrared/<upload_id>.<jpg|png>   the thermal image
    images/heatmap/<upload_id>.<jpg|png>    the inconsistency heat map (for reference)
    annotations/instances_visible.json      COCO, file_name "<upload_id>.<ext>"
    annotations/instances_infrared.json
    label_studio/tasks_visible.json         Label Studio tasks with "predictions"
    label_studio/tasks_infrared.json
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from msmine.server.blobs import BlobStore
from msmine.server.metadata import MetadataStore
from msmine.server.records import BatchRecord

EXT = {"image/png": "png", "image/jpeg": "jpg"}
EXPORT_MODALITIES = {"visible": "visible", "infrared": "thermal"}  # modality -> wire file part

README = """msmine labelling batch {batch_id}

CVAT: create a task from images/visible/ (or images/infrared/), then Actions > Upload annotations >
"COCO 1.0" with annotations/instances_visible.json (or instances_infrared.json). The boxes are the
model's fused-branch predictions (pre-annotations); correct them and export as "COCO 1.0".

Label Studio: serve this folder as local storage and import label_studio/tasks_visible.json (its
image URLs are /data/local-files/?d=images/visible/<id>.<ext>), or import the COCO file with
label-studio-converter. Export as COCO or YOLO.

Import back: POST /api/v1/labels with the COCO JSON (or a zip of YOLO .txt files named
<upload_id>.txt) and modality=visible|infrared|fusion|all.
"""


def merged_class_names(manifests: list[dict]) -> list[str]:
    names: list[str] = []
    for m in manifests:
        for n in m["class_names"]:
            if n not in names:
                names.append(n)
    return names


def _coco(pairs: list[dict], part: str, names: list[str], batch_id: str) -> dict:
    images, annotations = [], []
    ann_id = 1
    for image_id, m in enumerate(pairs, start=1):
        w, h = m["image_size"]
        images.append({"id": image_id, "file_name": f"{m['upload_id']}.{EXT[m['files'][part]['media_type']]}",
                       "width": w, "height": h, "license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0})
        for det in m["predictions"].get("fused", []):
            x1, y1, x2, y2 = det["box"]
            bw, bh = (x2 - x1) * w, (y2 - y1) * h
            annotations.append({
                "id": ann_id, "image_id": image_id,
                "category_id": names.index(m["class_names"][det["class_id"]]) + 1,
                "bbox": [round(x1 * w, 2), round(y1 * h, 2), round(bw, 2), round(bh, 2)],
                "area": round(bw * bh, 2), "iscrowd": 0, "segmentation": [],
                "score": det["score"], "attributes": {"occluded": False, "score": det["score"]},
            })
            ann_id += 1
    return {
        "info": {"description": f"msmine labelling batch {batch_id}", "contributor": "msmine", "version": "1.0",
                 "year": 0, "url": "", "date_created": ""},
        "licenses": [{"id": 0, "name": "", "url": ""}],
        "categories": [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(names)],
        "images": images,
        "annotations": annotations,
    }


def _label_studio(pairs: list[dict], modality: str, part: str) -> list[dict]:
    tasks = []
    for m in pairs:
        w, h = m["image_size"]
        result = []
        for i, det in enumerate(m["predictions"].get("fused", [])):
            x1, y1, x2, y2 = det["box"]
            result.append({
                "id": f"p{i}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                "original_width": w, "original_height": h, "image_rotation": 0, "score": det["score"],
                "value": {"x": x1 * 100, "y": y1 * 100, "width": (x2 - x1) * 100, "height": (y2 - y1) * 100,
                          "rotation": 0, "rectanglelabels": [m["class_names"][det["class_id"]]]},
            })
        name = f"{m['upload_id']}.{EXT[m['files'][part]['media_type']]}"
        tasks.append({
            "data": {"image": f"/data/local-files/?d=images/{modality}/{name}", "upload_id": m["upload_id"],
                     "score": m["score"], "device_id": m["device_id"]},
            "predictions": [{"model_version": m["model"]["version"], "score": m["score"], "result": result}],
        })
    return tasks


def export_batch(meta: MetadataStore, blobs: BlobStore, batch: BatchRecord, out: Path) -> Path:
    """Write the batch's zip to ``out``; returns ``out``."""
    manifests = []
    for uid in batch.upload_ids:
        record = meta.get_pair(uid)
        if record is not None:
            manifests.append(json.loads(record.manifest_json))
    names = merged_class_names(manifests)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("README.txt", README.format(batch_id=batch.batch_id))
        zf.writestr("batch.json", json.dumps({
            "batch_id": batch.batch_id, "created_at": batch.created_at, "filters": batch.filters,
            "hamming": batch.hamming, "class_names": names,
            "pairs": [{"upload_id": m["upload_id"], "device_id": m["device_id"], "score": m["score"],
                       "selection": m.get("selection"), "model_version": m["model"]["version"],
                       "captured_at": m["captured_at"]} for m in manifests],
        }, indent=1))
        for m in manifests:
            for folder, part in (("visible", "visible"), ("infrared", "thermal"), ("heatmap", "heatmap")):
                info = m["files"][part]
                zf.writestr(f"images/{folder}/{m['upload_id']}.{EXT[info['media_type']]}", blobs.read(info["sha256"]))
        for modality, part in EXPORT_MODALITIES.items():
            zf.writestr(f"annotations/instances_{modality}.json",
                        json.dumps(_coco(manifests, part, names, batch.batch_id)))
            zf.writestr(f"label_studio/tasks_{modality}.json", json.dumps(_label_studio(manifests, modality, part)))
    return out
