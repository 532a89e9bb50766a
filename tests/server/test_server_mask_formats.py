"""server.mask_formats: COCO RLE / polygons and Label Studio brush RLE / polygons <-> regions, table-tested
(known values from pycocotools and label-studio-converter's own test)."""

from __future__ import annotations

import numpy as np
import pytest

from msmine.errors import UserError
from msmine.server import mask_formats as mf


def shapes():
    h, w = 37, 53
    yy, xx = np.mgrid[:h, :w]
    return {
        "empty": np.zeros((h, w), bool),
        "full": np.ones((h, w), bool),
        "corner": (yy < 5) & (xx < 7),  # starts with a foreground run
        "rect": (yy >= 10) & (yy < 20) & (xx >= 3) & (xx < 40),
        "disc": (yy - 18) ** 2 + (xx - 26) ** 2 < 81,
        "pixel": (yy == 30) & (xx == 50),
        "line": (yy == 2) & (xx >= 10) & (xx < 30),
        "noise": np.random.default_rng(3).random((h, w)) < 0.3,
    }


@pytest.mark.parametrize("name", list(shapes()))
def test_coco_rle_round_trip_and_agrees_with_pycocotools(name):
    region = shapes()[name]
    rle = mf.coco_rle_encode(region)
    assert sum(rle["counts"]) == region.size and rle["size"] == list(region.shape)
    np.testing.assert_array_equal(mf.coco_rle_decode(rle, *region.shape), region)
    compressed = mf.coco_rle_compress(rle["counts"])
    assert mf.coco_rle_uncompress(compressed) == rle["counts"]
    np.testing.assert_array_equal(mf.coco_rle_decode({"size": rle["size"], "counts": compressed}, *region.shape),
                                  region)
    mask_api = pytest.importorskip("pycocotools.mask")
    ref = mask_api.encode(np.asfortranarray(region.astype(np.uint8)))
    assert ref["counts"].decode() == compressed  # the same string pycocotools writes
    ref_from_list = mask_api.frPyObjects(rle, *region.shape)
    np.testing.assert_array_equal(mask_api.decode(ref_from_list).astype(bool), region)


def test_coco_rle_known_value_from_datumaro_assets():
    # datumaro tests/assets/coco_dataset/coco_instances: size [10, 5], counts [0, 20, 30] = the first 4 columns
    region = mf.coco_rle_decode({"size": [10, 5], "counts": [0, 20, 30]}, 10, 5)
    assert region[:, :2].all() and not region[:, 2:].any()


@pytest.mark.parametrize("seg, reason", [
    ({"size": [10, 6], "counts": [60]}, "mask is 6x10, the image is 5x10"),
    ({"size": [10, 5], "counts": [10, 10]}, "do not cover"),
    ({"size": [10, 5], "counts": [0, -5, 55]}, "do not cover"),
    ({"size": [10, 5], "counts": "\x01\x02"}, "alphabet"),
    ({"counts": [50]}, "'size'"),
    ({"size": [10, 5], "counts": [1.5]}, "list of integers"),
])
def test_coco_rle_bad_input_is_one_line(seg, reason):
    with pytest.raises(UserError, match=reason):
        mf.coco_rle_decode(seg, 10, 5)


@pytest.mark.parametrize("name", ["rect", "corner", "pixel", "line"])
def test_polygons_round_trip_exactly_for_shapes_without_holes(name):
    region = shapes()[name]
    polys = mf.polygons_from_region(region)
    assert all(len(p) >= 6 and len(p) % 2 == 0 for p in polys)
    np.testing.assert_array_equal(mf.region_from_polygons(polys, *region.shape), region)
    # through Label Studio's percent points and back
    h, w = region.shape
    back = [mf.polygon_from_ls_points(mf.ls_points_from_polygon(p, h, w), h, w) for p in polys]
    np.testing.assert_array_equal(mf.region_from_polygons(back, h, w), region)


def test_polygons_of_a_disc_are_close():
    region = shapes()["disc"]
    again = mf.region_from_polygons(mf.polygons_from_region(region), *region.shape)
    assert (again & region).sum() / (again | region).sum() > 0.97


def test_label_studio_brush_rle_known_value():
    # label-studio-converter tests/test_brush.py::test_rle_encoding
    values = [1, 1, 1, 1, 2, 3, 5, 6, 7, 8, 4, 4, 4, 4, 4, 4, 4, 4]
    expected = [0, 0, 0, 18, 57, 27, 252, 96, 32, 1, 0, 6, 0, 40, 0, 192, 3, 128, 17, 56, 32]
    assert mf.ls_rle_encode(np.array(values)) == expected
    assert mf.ls_rle_decode(expected).tolist() == values


@pytest.mark.parametrize("name", list(shapes()))
def test_brush_round_trip(name):
    region = shapes()[name]
    rle = mf.brush_from_region(region)
    np.testing.assert_array_equal(mf.region_from_brush(rle, *region.shape), region)


def test_brush_long_runs_split_at_65536():
    values = np.full(200_000, 255, np.uint8)
    values[150_000:] = 0
    assert mf.ls_rle_decode(mf.ls_rle_encode(values)).tolist() == values.tolist()


@pytest.mark.parametrize("rle, h, w, reason", [
    (mf.brush_from_region(np.ones((4, 4), bool)), 4, 5, "holds 16 pixels, the image is 5x4"),
    (mf.brush_from_region(np.ones((4, 4), bool))[:5], 4, 4, "truncated"),
    ([255, 255, 255, 255, 0, 0, 0], 4, 4, "more than an image holds"),
    (["a"], 4, 4, "list of bytes"),
])
def test_brush_bad_input_is_one_line(rle, h, w, reason):
    with pytest.raises(UserError, match=reason):
        mf.region_from_brush(rle, h, w)


def test_class_regions_skip_background_and_paint_back():
    mask = np.zeros((6, 8), np.uint8)
    mask[1:3, 1:4] = 2
    mask[4:, 5:] = 7
    regions = mf.class_regions(mask)
    assert sorted(regions) == [2, 7]
    out = np.zeros_like(mask)
    for cid, region in regions.items():
        mf.paint(out, region, cid)
    np.testing.assert_array_equal(out, mask)
    assert mf.bbox_of(regions[7]) == (5, 4, 3, 2) and mf.bbox_of(np.zeros((2, 2), bool)) is None
