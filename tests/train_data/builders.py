"""Tiny on-disk datasets for the format-reader tests (images written with cv2)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from msmine.train.data.yolo import write_class_names, write_yolo_labels

HEIGHT, WIDTH = 48, 64


def write_pair(visible_path: Path, thermal_path: Path, seed: int, size=(HEIGHT, WIDTH)) -> None:
    rng = np.random.default_rng(seed)
    visible_path.parent.mkdir(parents=True, exist_ok=True)
    thermal_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(visible_path), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    cv2.imwrite(str(thermal_path), rng.integers(0, 255, size, dtype=np.uint8))


def make_msrs(root: Path, split: str = "train", ids=("0001D", "0002N"), masks: bool = True) -> Path:
    """Two pairs; pair 0 has a person (visible) / person + car (thermal, fused); pair 1 has none."""
    write_class_names(root / "classes.txt", ["person", "bicycle", "car"])
    write_class_names(root / "segmentation_classes.txt", ["unlabelled", "car", "person"])
    base = root / split
    for k, pair_id in enumerate(ids):
        write_pair(base / "visible" / f"{pair_id}.png", base / "infrared" / f"{pair_id}.png", seed=k)
        person = np.array([[10, 8, 20, 40]], np.float32)
        car = np.array([[30, 20, 60, 44]], np.float32)
        if k == 0:
            write_yolo_labels(base / "labels" / "visible" / f"{pair_id}.txt", person, [0], (HEIGHT, WIDTH))
            both = np.concatenate([person, car])
            write_yolo_labels(base / "labels" / "infrared" / f"{pair_id}.txt", both, [0, 2], (HEIGHT, WIDTH))
            write_yolo_labels(base / "labels" / "fusion" / f"{pair_id}.txt", both, [0, 2], (HEIGHT, WIDTH))
        else:
            for folder in ("visible", "infrared", "fusion"):
                (base / "labels" / folder).mkdir(parents=True, exist_ok=True)
                (base / "labels" / folder / f"{pair_id}.txt").write_text("")
        if masks:
            mask = np.zeros((HEIGHT, WIDTH), np.uint8)
            mask[8:40, 10:20] = 2
            (base / "segmentation").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(base / "segmentation" / f"{pair_id}.png"), mask)
    return root


def make_kaist(root: Path, split: str = "train", paired: bool = False) -> Path:
    base = root / split
    for k, pair_id in enumerate(("set00_V000_I00001", "set03_V001_I00002")):
        write_pair(base / "visible" / f"{pair_id}.jpg", base / "lwir" / f"{pair_id}.jpg", seed=k)
        lines = ["% bbGt version=3", "person 10 8 10 32 0 0 0 0 0 0 0", "cyclist 30 10 8 8 0 0 0 0 0 0 0"]
        (base / "annotations").mkdir(parents=True, exist_ok=True)
        (base / "annotations" / f"{pair_id}.txt").write_text("\n".join(lines) + "\n")
        if paired:
            for folder, extra in (("visible", []), ("lwir", ["person 40 5 12 30 0 0 0 0 0 0 0"])):
                (base / "annotations" / folder).mkdir(parents=True, exist_ok=True)
                (base / "annotations" / folder / f"{pair_id}.txt").write_text("\n".join(lines + extra))
    return root


def voc_xml(objects) -> str:
    parts = [f"<annotation><size><width>{WIDTH}</width><height>{HEIGHT}</height><depth>3</depth></size>"]
    for name, (x1, y1, x2, y2) in objects:
        parts.append(
            f"<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    return "".join(parts)


def make_voc(root: Path, split: str = "train") -> Path:
    """LLVIP layout: visible/<split>, infrared/<split>, Annotations/."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    for k, pair_id in enumerate(("010001", "010002")):
        write_pair(root / "visible" / split / f"{pair_id}.jpg", root / "infrared" / split / f"{pair_id}.jpg", seed=k)
        objects = [("person", (10, 8, 20, 40))] if k == 0 else [("person", (1, 1, 9, 9)), ("car", (30, 20, 70, 50))]
        (root / "Annotations" / f"{pair_id}.xml").write_text(voc_xml(objects))
    return root


def make_coco(root: Path, split: str = "train") -> Path:
    images, annotations = [], []
    for k, stem in enumerate(("a", "b")):
        write_pair(root / split / "visible" / f"{stem}.png", root / split / "thermal" / f"{stem}.png", seed=k)
        images.append(
            {"id": 7 + k, "file_name": f"visible/{stem}.png", "thermal_file_name": f"thermal/{stem}.png",
             "width": WIDTH, "height": HEIGHT}
        )
    annotations.append({"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 8, 10, 32], "iscrowd": 0})
    annotations.append({"id": 2, "image_id": 7, "category_id": 5, "bbox": [30, 20, 20, 20], "modality": "thermal"})
    annotations.append({"id": 3, "image_id": 8, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 1})
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": 5, "name": "car"}, {"id": 3, "name": "person"}]}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"{split}.json").write_text(json.dumps(data))
    return root


def make_kaist_release(root: Path, paired: bool = False) -> Path:
    """KAIST's release tree with a train split list naming two of three pairs."""
    entries = ["set00/V000/I00001", "set00/V000/I00003", "set04/V001/I00002"]
    for k, entry in enumerate(entries):
        set_name, video, frame = entry.split("/")
        folder = root / "images" / set_name / video
        write_pair(folder / "visible" / f"{frame}.jpg", folder / "lwir" / f"{frame}.jpg", seed=k)
        annotation = root / "annotations" / f"{entry}.txt"
        annotation.parent.mkdir(parents=True, exist_ok=True)
        annotation.write_text(f"% bbGt version=3\nperson {5 + k} 8 10 30 0 0 0 0 0 0 0\n")
        if paired:
            for sub, x in (("visible", 1), ("lwir", 2)):
                path = root / "annotations" / sub / f"{entry}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"person {x} 8 10 30 0 0 0 0 0 0 0\n")
    (root / "imageSets").mkdir(parents=True, exist_ok=True)
    (root / "imageSets" / "train.txt").write_text("set00/V000/I00001\nset04/V001/I00002\n\n")
    return root
