"""KAIST, VOC (LLVIP) and COCO readers on tiny datasets built in tmp_path; format detection; errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from msmine.errors import UserError
from msmine.train.data import detect_format, open_dataset
from tests.train_data.builders import (
    HEIGHT,
    WIDTH,
    make_coco,
    make_kaist,
    make_kaist_release,
    make_msrs,
    make_voc,
    voc_xml,
)


@pytest.mark.parametrize(
    ("builder", "fmt"), [(make_msrs, "msrs"), (make_kaist, "kaist"), (make_voc, "voc"), (make_coco, "coco")]
)
def test_auto_detects_each_format(tmp_path, builder, fmt):
    root = builder(tmp_path / "ds")
    assert detect_format(root, "train") == fmt
    ds = open_dataset(root, "train")
    assert ds.format == fmt and len(ds) == 2
    sample = ds[0]
    assert sample.visible.shape == (HEIGHT, WIDTH, 3) and sample.thermal.shape == (HEIGHT, WIDTH, 1)
    assert set(sample.boxes) == set(sample.labels) == {"visible", "thermal", "fused"}
    for i in range(len(ds)):  # annotations() gives what __getitem__ gives, without the pixels
        full, ann = ds[i], ds.annotations(i)
        assert ann.id == full.id and ann.is_night == full.is_night
        for branch in full.boxes:
            np.testing.assert_array_equal(ann.boxes[branch], full.boxes[branch])
            np.testing.assert_array_equal(ann.labels[branch], full.labels[branch])


def test_auto_fails_clearly(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(UserError, match="cannot tell the dataset format"):
        open_dataset(tmp_path, "train")


@pytest.mark.parametrize(
    ("root", "split", "fmt", "fragment"),
    [
        ("missing", "train", "auto", "dataset folder not found"),
        (".", "train", "yolo", "unknown dataset format"),
        (".", "../x", "auto", "invalid split"),
    ],
)
def test_open_argument_errors(tmp_path, root, split, fmt, fragment):
    with pytest.raises(UserError, match=fragment):
        open_dataset(tmp_path / root, split, fmt)


# -- KAIST ------------------------------------------------------------------------------------------
def test_kaist_single_annotation_set(tmp_path):
    ds = open_dataset(make_kaist(tmp_path / "k"), "train", fmt="kaist")
    assert ds.class_names == ["person"]
    assert ds.ids == ["set00_V000_I00001", "set03_V001_I00002"]
    assert ds.is_night == [False, True]
    sample = ds[0]
    for branch in ("visible", "thermal", "fused"):  # cyclist dropped, person kept, x y w h -> x1 y1 x2 y2
        np.testing.assert_allclose(sample.boxes[branch], [[10, 8, 20, 40]])
        assert sample.labels[branch].tolist() == [0]


def test_kaist_paired_annotations(tmp_path):
    ds = open_dataset(make_kaist(tmp_path / "k", paired=True), "train")
    ann = ds.annotations(1)
    np.testing.assert_allclose(ann.boxes["visible"], [[10, 8, 20, 40]])
    np.testing.assert_allclose(ann.boxes["thermal"], [[10, 8, 20, 40], [40, 5, 52, 35]])
    np.testing.assert_allclose(ann.boxes["fused"], [[10, 8, 20, 40]])  # the joint annotations/<id>.txt


def test_kaist_paired_without_joint_uses_lwir_for_fused(tmp_path):
    root = make_kaist(tmp_path / "k", paired=True)
    for path in (root / "train" / "annotations").glob("*.txt"):
        path.unlink()
    ann = open_dataset(root, "train").annotations(0)
    np.testing.assert_allclose(ann.boxes["fused"], ann.boxes["thermal"])


def test_kaist_without_split_folder(tmp_path):
    root = make_kaist(tmp_path / "k")
    for sub in ("visible", "lwir", "annotations"):
        shutil.move(str(root / "train" / sub), str(root / sub))
    ds = open_dataset(root, "train", fmt="kaist")
    assert len(ds) == 2


def test_kaist_missing_annotation_names_it(tmp_path):
    root = make_kaist(tmp_path / "k")
    path = root / "train" / "annotations" / "set03_V001_I00002.txt"
    path.unlink()
    with pytest.raises(UserError, match="missing annotation file") as info:
        open_dataset(root, "train")
    assert str(path) in str(info.value)


def test_kaist_malformed_line_names_file_and_line(tmp_path):
    root = make_kaist(tmp_path / "k")
    path = root / "train" / "annotations" / "set00_V000_I00001.txt"
    path.write_text("% bbGt version=3\nperson 1 2 three 4 0 0 0 0 0 0 0\n")
    with pytest.raises(UserError, match="line 2") as info:
        open_dataset(root, "train").annotations(0)
    assert str(path) in str(info.value)


def test_kaist_release_tree_with_split_list(tmp_path):
    root = make_kaist_release(tmp_path / "kaist")
    assert detect_format(root, "train") == "kaist"
    ds = open_dataset(root, "train")
    assert ds.ids == ["set00_V000_I00001", "set04_V001_I00002"]
    assert ds.is_night == [False, True]
    sample = ds[1]
    assert sample.visible.shape == (HEIGHT, WIDTH, 3)
    for branch in ("visible", "thermal", "fused"):
        np.testing.assert_allclose(sample.boxes[branch], [[7, 8, 17, 38]])


def test_kaist_release_tree_paired_and_without_list(tmp_path):
    root = make_kaist_release(tmp_path / "kaist", paired=True)
    (root / "imageSets" / "train.txt").unlink()
    ds = open_dataset(root, "train", fmt="kaist")
    assert len(ds) == 3
    ann = ds.annotations(0)
    np.testing.assert_allclose(ann.boxes["visible"], [[1, 8, 11, 38]])
    np.testing.assert_allclose(ann.boxes["thermal"], [[2, 8, 12, 38]])
    np.testing.assert_allclose(ann.boxes["fused"], [[5, 8, 15, 38]])


def test_kaist_release_tree_missing_files_named(tmp_path):
    root = make_kaist_release(tmp_path / "kaist")
    path = root / "annotations" / "set04" / "V001" / "I00002.txt"
    path.unlink()
    with pytest.raises(UserError, match="missing annotation file") as info:
        open_dataset(root, "train")
    assert str(path) in str(info.value)
    (root / "imageSets" / "train.txt").write_text("set00/V000/I00009\n")
    with pytest.raises(UserError, match="missing visible image") as info:
        open_dataset(root, "train")
    assert "I00009" in str(info.value)


# -- VOC / LLVIP -----------------------------------------------------------------------------------
def test_voc_llvip_layout(tmp_path):
    ds = open_dataset(make_voc(tmp_path / "v"), "train")
    assert ds.class_names == ["car", "person"]  # scanned from the XML files, sorted
    assert ds.ids == ["010001", "010002"]
    ann = ds.annotations(1)
    for branch in ("visible", "thermal", "fused"):
        np.testing.assert_allclose(ann.boxes[branch], [[1, 1, 9, 9], [30, 20, WIDTH, HEIGHT]])  # clipped
        assert ann.labels[branch].tolist() == [1, 0]
    assert ann.is_night is None


def test_voc_classes_txt_wins_and_unknown_class_is_an_error(tmp_path):
    root = make_voc(tmp_path / "v")
    (root / "classes.txt").write_text("person\n")
    ds = open_dataset(root, "train", fmt="voc")
    assert ds.class_names == ["person"]
    assert ds.annotations(0).labels["fused"].tolist() == [0]
    with pytest.raises(UserError, match="unknown class 'car'") as info:
        ds.annotations(1)
    assert "010002.xml" in str(info.value)


def test_voc_per_split_folders(tmp_path):
    root = make_voc(tmp_path / "v", split="test")
    (root / "test").mkdir()
    shutil.move(str(root / "visible" / "test"), str(root / "test" / "visible"))
    shutil.move(str(root / "infrared" / "test"), str(root / "test" / "infrared"))
    shutil.move(str(root / "Annotations"), str(root / "test" / "Annotations"))
    ds = open_dataset(root, "test")
    assert ds.format == "voc" and len(ds) == 2


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("<annotation><object><name>person", "corrupt VOC XML"),
        (voc_xml([("person", (1, 2, "x", 4))]), "non-numeric bndbox"),
        ("<annotation><object><name>person</name></object></annotation>", "lacks <name> or <bndbox>"),
    ],
)
def test_voc_corrupt_xml_names_it(tmp_path, content, fragment):
    root = make_voc(tmp_path / "v")
    (root / "classes.txt").write_text("person\ncar\n")
    path = root / "Annotations" / "010002.xml"
    path.write_text(content)
    with pytest.raises(UserError, match=fragment) as info:
        open_dataset(root, "train").annotations(1)
    assert str(path) in str(info.value)


def test_voc_missing_annotation_names_it(tmp_path):
    root = make_voc(tmp_path / "v")
    (root / "Annotations" / "010001.xml").unlink()
    with pytest.raises(UserError, match="missing annotation file") as info:
        open_dataset(root, "train")
    assert "010001.xml" in str(info.value)


def test_voc_corrupt_thermal_image_names_it(tmp_path):
    root = make_voc(tmp_path / "v")
    path = root / "infrared" / "train" / "010001.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(UserError, match="cannot decode thermal image") as info:
        open_dataset(root, "train")[0]
    assert str(path) in str(info.value)


# -- COCO ------------------------------------------------------------------------------------------
def test_coco_pairs_and_modalities(tmp_path):
    ds = open_dataset(make_coco(tmp_path / "c"), "train")
    assert ds.class_names == ["person", "car"]  # ordered by category id (3, 5)
    assert ds.ids == ["a", "b"]
    sample = ds[0]
    np.testing.assert_allclose(sample.boxes["visible"], [[10, 8, 20, 40]])
    np.testing.assert_allclose(sample.boxes["fused"], [[10, 8, 20, 40]])
    np.testing.assert_allclose(sample.boxes["thermal"], [[10, 8, 20, 40], [30, 20, 50, 40]])
    assert sample.labels["thermal"].tolist() == [0, 1]
    assert all(len(b) == 0 for b in ds.annotations(1).boxes.values())  # crowd annotation skipped


def _edit_coco(root, edit):
    path = root / "annotations" / "train.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d["annotations"].append({"id": 9, "image_id": 99, "category_id": 3, "bbox": [0, 0, 1, 1]}),
         "unknown image_id"),
        (lambda d: d["annotations"].append({"id": 9, "image_id": 7, "category_id": 4, "bbox": [0, 0, 1, 1]}),
         "unknown category_id"),
        (lambda d: d["annotations"].append({"id": 9, "image_id": 7, "category_id": 3, "bbox": [0, 0, 1]}),
         "'bbox' must be"),
        (lambda d: d["annotations"].append(
            {"id": 9, "image_id": 7, "category_id": 3, "bbox": [0, 0, 1, 1], "modality": "lwir"}), "'modality'"),
        (lambda d: d["images"][1].pop("thermal_file_name"), "thermal_file_name"),
        (lambda d: d.pop("categories"), "no 'categories'"),
        (lambda d: d["categories"].append({"name": "x"}), "integer 'id'"),
        (lambda d: d["annotations"].append([1, 2]), "not an object"),
        (lambda d: d["images"].append(dict(d["images"][0])), "duplicate image id"),
    ],
)
def test_coco_bad_json_content_names_file(tmp_path, edit, fragment):
    root = make_coco(tmp_path / "c")
    path = _edit_coco(root, edit)
    with pytest.raises(UserError, match=fragment) as info:
        open_dataset(root, "train")
    assert str(path) in str(info.value)


def test_coco_corrupt_json_names_it(tmp_path):
    root = make_coco(tmp_path / "c")
    path = root / "annotations" / "train.json"
    path.write_text('{"images": [')
    with pytest.raises(UserError, match="corrupt COCO JSON") as info:
        open_dataset(root, "train")
    assert str(path) in str(info.value)


def test_coco_missing_thermal_image_names_it(tmp_path):
    root = make_coco(tmp_path / "c")
    path = root / "train" / "thermal" / "b.png"
    path.unlink()
    ds = open_dataset(root, "train")
    with pytest.raises(UserError, match="missing thermal image") as info:
        ds[1]
    assert str(path) in str(info.value)


def test_sixteen_bit_thermal_is_stretched(tmp_path):
    import cv2

    from msmine.train.data.imageio import read_thermal

    raw = np.linspace(7000, 9000, 48 * 64).reshape(48, 64).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "t.png"), raw)
    out = read_thermal(tmp_path / "t.png")
    assert out.shape == (48, 64, 1) and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255
    colour = np.dstack([raw.astype(np.uint8)] * 3)
    cv2.imwrite(str(tmp_path / "c.png"), colour)
    assert read_thermal(tmp_path / "c.png").shape == (48, 64, 1)


def test_coco_file_names_relative_to_root(tmp_path):
    root = make_coco(tmp_path / "c")
    shutil.move(str(root / "train"), str(root / "images"))
    path = _edit_coco(root, lambda d: [
        img.update(file_name="images/" + img["file_name"], thermal_file_name="images/" + img["thermal_file_name"])
        for img in d["images"]
    ])
    ds = open_dataset(root, "train", fmt="coco")
    assert ds[0].visible.shape == (HEIGHT, WIDTH, 3)
    assert path.name == "train.json"


def test_unknown_split_lists_the_split_folders(tmp_path):
    root = make_msrs(tmp_path / "ds")
    with pytest.raises(UserError, match=r"no split 'val' .*split folders there: train"):
        open_dataset(root, "val")
