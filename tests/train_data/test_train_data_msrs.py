"""MSRS reader on the real data (counts from the data README) and on tiny synthetic copies."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from msmine.errors import UserError
from msmine.train.data import PairDataset, open_dataset
from msmine.train.data.msrs import day_night_from_id
from msmine.train.metrics import split_day_night
from tests.train_data.builders import HEIGHT, WIDTH, make_msrs

# data README table: split -> (pairs, day, night, {branch: (boxes, images with boxes)})
README_COUNTS = {
    "train": (1083, 536, 547, {"visible": (3376, 848), "thermal": (5583, 1025), "fused": (4921, 1019)}),
    "test": (361, 179, 182, {"visible": (1002, 272), "thermal": (1795, 343), "fused": (1481, 328)}),
}


@pytest.fixture(scope="module")
def msrs_splits(msrs_root) -> dict[str, PairDataset]:
    return {split: open_dataset(msrs_root, split) for split in README_COUNTS}


@pytest.mark.realdata
@pytest.mark.parametrize("split", list(README_COUNTS))
def test_real_counts_match_readme(msrs_splits, split):
    pairs, day, night, boxes = README_COUNTS[split]
    ds = msrs_splits[split]
    assert ds.format == "msrs"
    assert len(ds) == pairs
    assert ds.class_names == ["person", "bicycle", "car"]
    assert ds.segmentation_classes is not None and len(ds.segmentation_classes) == 9
    assert ds.segmentation_classes[0] == "unlabelled"
    splits = split_day_night(ds.is_night)
    assert (len(splits["day"]), len(splits["night"]), len(splits["all"])) == (day, night, pairs)
    counted = {branch: [0, 0] for branch in boxes}
    for i in range(len(ds)):
        ann = ds.annotations(i)
        for branch in counted:
            n = len(ann.boxes[branch])
            assert ann.labels[branch].shape == (n,)
            counted[branch][0] += n
            counted[branch][1] += n > 0
    assert {b: tuple(v) for b, v in counted.items()} == boxes


@pytest.mark.realdata
def test_real_sample_shapes_and_boxes_inside(msrs_splits):
    ds = msrs_splits["train"]
    for i in (0, 2, len(ds) - 1):
        sample = ds[i]
        assert sample.visible.shape == (480, 640, 3) and sample.visible.dtype == np.uint8
        assert sample.thermal.shape == (480, 640, 1) and sample.thermal.dtype == np.uint8
        assert sample.mask.shape == (480, 640) and sample.mask.dtype == np.uint8
        assert sample.mask.max() < 9
        assert sample.is_night == sample.id.endswith("N")
        ann = ds.annotations(i)
        assert ann.id == sample.id and ann.is_night == sample.is_night
        no_mask = ds.annotations(i, with_mask=False)
        assert no_mask.mask is None
        for branch in ("visible", "thermal", "fused"):
            np.testing.assert_array_equal(no_mask.boxes[branch], sample.boxes[branch])
        np.testing.assert_array_equal(ann.mask, sample.mask)
        for branch in ("visible", "thermal", "fused"):
            np.testing.assert_array_equal(ann.boxes[branch], sample.boxes[branch])
            b = sample.boxes[branch]
            assert b.dtype == np.float32 and sample.labels[branch].dtype == np.int64
            assert np.all(b[:, 0] >= 0) and np.all(b[:, 2] <= 640) and np.all(b[:, 1] >= 0) and np.all(b[:, 3] <= 480)
            assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])


@pytest.mark.realdata
def test_real_messy_fusion_file_parses(msrs_root, msrs_splits):
    """The fusion label of 00001D uses double spaces and has no trailing newline."""
    text = (msrs_root / "train" / "labels" / "fusion" / "00001D.txt").read_text()
    assert "  " in text and not text.endswith("\n")
    lines = [line for line in text.splitlines() if line.strip()]
    ds = msrs_splits["train"]
    ann = ds.annotations(ds.ids.index("00001D"))
    assert len(ann.boxes["fused"]) == len(lines)
    first = [float(v) for v in lines[0].split()]
    cx, cy, w, h = first[1:]
    np.testing.assert_allclose(
        ann.boxes["fused"][0], [(cx - w / 2) * 640, (cy - h / 2) * 480, (cx + w / 2) * 640, (cy + h / 2) * 480], rtol=1e-5
    )
    assert ann.labels["fused"][0] == int(first[0])


@pytest.mark.realdata
def test_real_subset_and_slice(msrs_splits):
    ds = msrs_splits["test"]
    sub = ds.subset([5, 0, 5])
    assert sub.ids == [ds.ids[5], ds.ids[0], ds.ids[5]]
    assert sub.class_names == ds.class_names and sub.segmentation_classes == ds.segmentation_classes
    assert ds[2:4].ids == ds.ids[2:4]
    assert ds[-1].id == ds.ids[-1]
    with pytest.raises(IndexError):
        ds.subset([len(ds)])


@pytest.mark.parametrize(("pair_id", "night"), [("00001D", False), ("01234N", True), ("frame7", None), ("", None)])
def test_day_night_from_id(pair_id, night):
    assert day_night_from_id(pair_id) is night


def test_synthetic_msrs_roundtrip(tmp_path):
    root = make_msrs(tmp_path / "ds")
    ds = open_dataset(root, "train")
    assert ds.format == "msrs" and ds.ids == ["0001D", "0002N"]
    assert ds.is_night == [False, True]
    sample = ds[0]
    assert sample.visible.shape == (HEIGHT, WIDTH, 3) and sample.thermal.shape == (HEIGHT, WIDTH, 1)
    np.testing.assert_allclose(sample.boxes["visible"], [[10, 8, 20, 40]], atol=1e-3)
    np.testing.assert_allclose(sample.boxes["thermal"], [[10, 8, 20, 40], [30, 20, 60, 44]], atol=1e-3)
    assert sample.labels["fused"].tolist() == [0, 2]
    assert ds[1].boxes["fused"].shape == (0, 4)
    assert ds.segmentation_classes == ["unlabelled", "car", "person"]


def test_segmentation_only_msrs(tmp_path):
    root = make_msrs(tmp_path / "ds")
    shutil.rmtree(root / "train" / "labels")
    ds = open_dataset(root, "train")
    sample = ds[0]
    assert sample.mask is not None and all(len(b) == 0 for b in sample.boxes.values())


def test_missing_label_file_names_it(tmp_path):
    root = make_msrs(tmp_path / "ds")
    (root / "train" / "labels" / "fusion" / "0002N.txt").unlink()
    with pytest.raises(UserError, match="missing label file") as info:
        open_dataset(root, "train")
    assert str(root / "train" / "labels" / "fusion" / "0002N.txt") in str(info.value)


def test_missing_thermal_names_it(tmp_path):
    root = make_msrs(tmp_path / "ds")
    (root / "train" / "infrared" / "0001D.png").unlink()
    with pytest.raises(UserError, match="missing thermal image") as info:
        open_dataset(root, "train")
    assert "0001D" in str(info.value)


@pytest.mark.parametrize("which", ["visible", "infrared"])
def test_corrupt_image_names_it(tmp_path, which):
    root = make_msrs(tmp_path / "ds")
    path = root / "train" / which / "0002N.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    ds = open_dataset(root, "train")
    ds[0]  # the other pair still reads
    with pytest.raises(UserError, match="cannot decode") as info:
        ds[1]
    assert str(path) in str(info.value)


def test_image_deleted_after_open_names_it(tmp_path):
    root = make_msrs(tmp_path / "ds")
    ds = open_dataset(root, "train")
    (root / "train" / "visible" / "0001D.png").unlink()
    with pytest.raises(UserError, match="missing visible image") as info:
        ds[0]
    assert "0001D.png" in str(info.value)


def test_corrupt_mask_names_it(tmp_path):
    root = make_msrs(tmp_path / "ds")
    path = root / "train" / "segmentation" / "0001D.png"
    path.write_bytes(b"garbage")
    ds = open_dataset(root, "train")
    with pytest.raises(UserError, match="segmentation mask") as info:
        ds.annotations(0)
    assert str(path) in str(info.value)


def test_malformed_label_line_names_file_and_line(tmp_path):
    root = make_msrs(tmp_path / "ds")
    path = root / "train" / "labels" / "infrared" / "0002N.txt"
    path.write_text("0 0.5 0.5 0.1 0.1\n\n0 0.5 0.5 0.1\n")
    ds = open_dataset(root, "train")
    with pytest.raises(UserError, match="line 3") as info:
        ds.annotations(1)
    assert str(path) in str(info.value)


def test_unaligned_pair_sizes_rejected(tmp_path):
    import cv2

    root = make_msrs(tmp_path / "ds")
    cv2.imwrite(str(root / "train" / "infrared" / "0001D.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(UserError, match="same size"):
        open_dataset(root, "train")[0]


def test_missing_classes_txt(tmp_path):
    root = make_msrs(tmp_path / "ds")
    (root / "classes.txt").unlink()
    with pytest.raises(UserError, match="classes.txt"):
        open_dataset(root, "train", fmt="msrs")


def test_dataset_pickles_for_dataloader_workers(tmp_path):
    import pickle

    ds = open_dataset(make_msrs(tmp_path / "ds"), "train").subset([1, 0])
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.ids == ds.ids and clone.class_names == ds.class_names
    np.testing.assert_array_equal(clone[1].boxes["thermal"], ds[1].boxes["thermal"])


@pytest.mark.realdata
def test_real_labels_roundtrip_through_write_yolo_labels(msrs_splits, tmp_path):
    """What `msmine pull` writes with write_yolo_labels reads back as the same boxes."""
    from msmine.train.data import read_yolo_labels, write_yolo_labels

    ds = msrs_splits["test"]
    for i in range(0, len(ds), 40):
        ann = ds.annotations(i)
        for branch in ("visible", "thermal", "fused"):
            path = tmp_path / branch / f"{ann.id}.txt"
            write_yolo_labels(path, ann.boxes[branch], ann.labels[branch], (480, 640))
            boxes, labels = read_yolo_labels(path, (480, 640), num_classes=3)
            np.testing.assert_allclose(boxes, ann.boxes[branch], atol=2e-3)
            np.testing.assert_array_equal(labels, ann.labels[branch])
