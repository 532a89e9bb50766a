"""Pair augmentation: one geometric transform for both images, the mask and all three box sets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from msmine.train.data import PairAugment, PairSample, letterbox, open_dataset, unletterbox_boxes
from msmine.train.data.augment import hflip, letterbox_boxes

BRANCHES = ("visible", "thermal", "fused")


@pytest.mark.parametrize(
    ("in_hw", "out_hw", "scale", "pad", "content"),
    [
        ((480, 640), (256, 320), 0.5, (0, 8), (240, 320)),
        ((480, 640), (480, 640), 1.0, (0, 0), (480, 640)),
        ((100, 100), (50, 100), 0.5, (25, 0), (50, 50)),
        ((100, 200), (300, 300), 1.5, (0, 75), (150, 300)),
    ],
)
def test_letterbox_table(in_hw, out_hw, scale, pad, content):
    for shape in (in_hw, (*in_hw, 1), (*in_hw, 3)):
        image = np.full(shape, 200, np.uint8)
        out, got_scale, got_pad = letterbox(image, out_hw, fill=7)
        assert out.shape == (*out_hw, *shape[2:])
        assert got_scale == pytest.approx(scale) and got_pad == pad
        y0, x0 = pad[1], pad[0]
        inner = out[y0 : y0 + content[0], x0 : x0 + content[1]]
        assert np.all(inner == 200)
        assert (out == 7).sum() == (np.prod(out_hw) - np.prod(content)) * (shape[2] if len(shape) == 3 else 1)


def test_letterbox_boxes_roundtrip():
    boxes = np.array([[0, 0, 640, 480], [100.5, 20, 200, 300]], np.float32)
    _, scale, pad = letterbox(np.zeros((480, 640, 3), np.uint8), (256, 320))
    mapped = letterbox_boxes(boxes, scale, pad)
    np.testing.assert_allclose(mapped[0], [0, 8, 320, 248])
    np.testing.assert_allclose(unletterbox_boxes(mapped, scale, pad, (480, 640)), boxes, atol=1e-4)


def synthetic_sample(height=120, width=160) -> PairSample:
    """Two objects painted into both images and the mask; visible sees A, thermal and fused see A and B."""
    a = np.array([20, 30, 60, 100], np.float32)
    b = np.array([100, 10, 150, 50], np.float32)
    visible = np.zeros((height, width, 3), np.uint8)
    thermal = np.zeros((height, width, 1), np.uint8)
    mask = np.zeros((height, width), np.uint8)
    for (x1, y1, x2, y2), cls in ((a, 1), (b, 2)):
        visible[int(y1) : int(y2), int(x1) : int(x2)] = (50 * cls, 100, 200)
        thermal[int(y1) : int(y2), int(x1) : int(x2)] = 100 * cls
        mask[int(y1) : int(y2), int(x1) : int(x2)] = cls
    return PairSample(
        id="synthetic",
        visible=visible,
        thermal=thermal,
        boxes={"visible": a[None].copy(), "thermal": np.stack([a, b]), "fused": np.stack([a, b])},
        labels={"visible": np.array([0]), "thermal": np.array([0, 1]), "fused": np.array([0, 1])},
        mask=mask,
        is_night=False,
    )


def test_eval_mode_is_only_letterbox():
    sample = synthetic_sample()
    aug = PairAugment((60, 100), train=False)
    out = aug(sample, np.random.default_rng(0))
    scale, pad = 0.5, (10, 0)
    expected, _, _ = letterbox(sample.visible, (60, 100))
    np.testing.assert_array_equal(out.visible, expected)
    for branch in BRANCHES:
        np.testing.assert_allclose(out.boxes[branch], letterbox_boxes(sample.boxes[branch], scale, pad))
    assert out.visible.shape == (60, 100, 3) and out.thermal.shape == (60, 100, 1) and out.mask.shape == (60, 100)


def test_flip_twice_is_identity():
    sample = synthetic_sample()
    twice = hflip(hflip(sample))
    np.testing.assert_array_equal(twice.visible, sample.visible)
    np.testing.assert_array_equal(twice.thermal, sample.thermal)
    np.testing.assert_array_equal(twice.mask, sample.mask)
    for branch in BRANCHES:
        np.testing.assert_allclose(twice.boxes[branch], sample.boxes[branch])
    once = hflip(sample)
    np.testing.assert_allclose(once.boxes["visible"], [[100, 30, 140, 100]])
    assert np.all(once.mask[30:100, 100:140] == 1)


def test_flip_only_augment_twice_is_identity():
    """With flip forced (p=0.5 draws), two flips through PairAugment's affine path give the original back."""
    sample = synthetic_sample()
    aug = PairAugment((120, 160), train=True, expand_max=1.0, crop=False, flip=True)
    rng = np.random.default_rng(0)
    flipped = None
    for _ in range(20):
        out = aug(sample, rng)
        if not np.array_equal(out.mask, sample.mask):
            flipped = out
            break
    assert flipped is not None
    np.testing.assert_array_equal(flipped.mask, hflip(sample).mask)
    np.testing.assert_array_equal(flipped.visible, hflip(sample).visible)
    np.testing.assert_allclose(flipped.boxes["thermal"], hflip(sample).boxes["thermal"])


def _box_interior(box: np.ndarray, margin: int = 1) -> tuple[slice, slice]:
    x1, y1, x2, y2 = box
    return slice(int(np.ceil(y1)) + margin, int(np.floor(y2)) - margin), slice(int(np.ceil(x1)) + margin, int(np.floor(x2)) - margin)


@pytest.mark.parametrize("seed", range(40))
def test_train_augment_moves_pixels_mask_and_boxes_together(seed):
    sample = synthetic_sample()
    out_hw = (96, 112)
    out = PairAugment(out_hw, train=True)(sample, np.random.default_rng(seed))
    assert out.visible.shape == (*out_hw, 3) and out.thermal.shape == (*out_hw, 1) and out.mask.shape == out_hw
    assert out.visible.dtype == out.thermal.dtype == out.mask.dtype == np.uint8
    for branch in BRANCHES:
        boxes = out.boxes[branch]
        assert boxes.dtype == np.float32 and out.labels[branch].dtype == np.int64
        assert len(boxes) == len(out.labels[branch])
        assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= out_hw[1]) and np.all(boxes[:, [1, 3]] <= out_hw[0])
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
        for box, label in zip(boxes, out.labels[branch]):
            ys, xs = _box_interior(box)
            cls = int(label) + 1
            if ys.stop - ys.start < 2 or xs.stop - xs.start < 2:
                continue
            assert np.all(out.mask[ys, xs] == cls), f"seed {seed}: mask inside {branch} box {box} is not {cls}"
            assert abs(float(out.thermal[ys, xs].mean()) - 100 * cls) < 2
            assert abs(float(out.visible[ys, xs, 0].mean()) - 50 * cls) < 2
    # object A is in all three sets: where kept, its box is the same in each
    a_vis = out.boxes["visible"]
    a_thermal = out.boxes["thermal"][out.labels["thermal"] == 0]
    a_fused = out.boxes["fused"][out.labels["fused"] == 0]
    np.testing.assert_allclose(a_vis, a_thermal)
    np.testing.assert_allclose(a_vis, a_fused)
    # mask pixels of a kept object lie inside its box (a crop may drop an object whose centre it cuts
    # off, SSD's rule, and then its visible remainder stays in the mask without a box)
    for label in np.unique(out.labels["fused"]):
        near_box = np.zeros(out_hw, bool)
        for box in out.boxes["fused"][out.labels["fused"] == label]:
            x1, y1, x2, y2 = box
            near_box[max(0, int(y1) - 1) : int(np.ceil(y2)) + 1, max(0, int(x1) - 1) : int(np.ceil(x2)) + 1] = True
        assert not np.any(out.mask[~near_box] == label + 1)


def test_same_seed_same_output():
    sample = synthetic_sample()
    aug = PairAugment((96, 112), train=True)
    first = aug(sample, np.random.default_rng(5))
    second = aug(sample, np.random.default_rng(5))
    np.testing.assert_array_equal(first.visible, second.visible)
    np.testing.assert_array_equal(first.mask, second.mask)
    for branch in BRANCHES:
        np.testing.assert_array_equal(first.boxes[branch], second.boxes[branch])


def test_augment_without_mask_and_without_boxes():
    sample = dataclasses.replace(
        synthetic_sample(),
        mask=None,
        boxes={b: np.zeros((0, 4), np.float32) for b in BRANCHES},
        labels={b: np.zeros(0, np.int64) for b in BRANCHES},
    )
    rng = np.random.default_rng(1)
    for _ in range(10):
        out = PairAugment((64, 64), train=True)(sample, rng)
        assert out.mask is None and out.visible.shape == (64, 64, 3)
        assert all(out.boxes[b].shape == (0, 4) for b in BRANCHES)


def test_augment_rejects_annotation_only_sample():
    sample = dataclasses.replace(synthetic_sample(), visible=np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ValueError, match="no image data"):
        PairAugment((64, 64), train=False)(sample, np.random.default_rng(0))


@pytest.mark.parametrize("kwargs", [{"out_size": (0, 10)}, {"out_size": (10, 10), "expand_max": 0.5}])
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        PairAugment(train=True, **kwargs)


@pytest.mark.realdata
def test_real_pairs_augment_consistently(msrs_root):
    """On real MSRS pairs: boxes stay inside; with expand + flip (no crop) the mask under each box keeps its class mix."""
    ds = open_dataset(msrs_root, "train")
    rng = np.random.default_rng(0)
    full = PairAugment((256, 320), train=True)
    no_crop = PairAugment((480, 640), train=True, crop=False)
    checked = 0
    for index in range(0, 60, 3):
        sample = ds[index]
        out = full(sample, rng)
        for branch in BRANCHES:
            b = out.boxes[branch]
            assert np.all(b >= 0) and np.all(b[:, [0, 2]] <= 320) and np.all(b[:, [1, 3]] <= 256)
        out = no_crop(sample, rng)
        assert [len(out.boxes[b]) for b in BRANCHES] == [len(sample.boxes[b]) for b in BRANCHES]
        for before, after in zip(sample.boxes["fused"], out.boxes["fused"]):
            if after[2] - after[0] < 12 or after[3] - after[1] < 12:
                continue
            ys0, xs0 = _box_interior(before)
            ys1, xs1 = _box_interior(after)
            hist_before = np.bincount(sample.mask[ys0, xs0].ravel(), minlength=9) / sample.mask[ys0, xs0].size
            hist_after = np.bincount(out.mask[ys1, xs1].ravel(), minlength=9) / out.mask[ys1, xs1].size
            assert np.abs(hist_before - hist_after).max() < 0.12
            checked += 1
    assert checked > 10


def test_crop_and_expand_both_happen():
    """Over a few seeds the object is sometimes enlarged (crop) and sometimes shrunk (expand)."""
    sample = synthetic_sample()
    aug = PairAugment((120, 160), train=True)
    widths = []
    for seed in range(60):
        out = aug(sample, np.random.default_rng(seed))
        a = out.boxes["visible"]
        if len(a):
            widths.append(float(a[0, 2] - a[0, 0]))
    assert min(widths) < 39 and max(widths) > 41  # the original width is 40


@pytest.mark.realdata
@pytest.mark.parametrize("out_hw", [(256, 320), (300, 300), (480, 640)])
def test_train_path_without_random_steps_equals_letterbox(msrs_root, out_hw):
    """The composed affine (cv2.warpAffine) path resamples like the letterbox (cv2.resize) path."""
    sample = open_dataset(msrs_root, "test")[3]
    a = PairAugment(out_hw, train=True, expand_max=1.0, crop=False, flip=False)(sample, np.random.default_rng(0))
    b = PairAugment(out_hw, train=False)(sample, np.random.default_rng(0))
    assert np.abs(a.visible.astype(int) - b.visible.astype(int)).max() <= 1
    assert np.abs(a.thermal.astype(int) - b.thermal.astype(int)).max() <= 1
    assert (a.mask != b.mask).mean() < 0.01
    for branch in BRANCHES:
        np.testing.assert_allclose(a.boxes[branch], b.boxes[branch], atol=1e-4)


def _random_sample(rng: np.random.Generator, height: int, width: int, count: int) -> PairSample:
    x1 = rng.uniform(0, width - 1, count)
    y1 = rng.uniform(0, height - 1, count)
    boxes = np.stack(
        [x1, y1, np.minimum(width, x1 + rng.uniform(1, width, count)), np.minimum(height, y1 + rng.uniform(1, height, count))],
        axis=1,
    ).astype(np.float32)
    labels = rng.integers(0, 3, count)
    return PairSample(
        id="random",
        visible=rng.integers(0, 255, (height, width, 3), dtype=np.uint8),
        thermal=rng.integers(0, 255, (height, width, 1), dtype=np.uint8),
        boxes={"visible": boxes[: count // 2], "thermal": boxes, "fused": boxes[count // 3 :]},
        labels={"visible": labels[: count // 2], "thermal": labels, "fused": labels[count // 3 :]},
        mask=rng.integers(0, 9, (height, width), dtype=np.uint8),
        is_night=None,
    )


@pytest.mark.parametrize("seed", range(25))
def test_random_shapes_keep_invariants(seed):
    rng = np.random.default_rng(1000 + seed)
    height, width = int(rng.integers(8, 200)), int(rng.integers(8, 200))
    out_hw = (int(rng.integers(8, 160)), int(rng.integers(8, 160)))
    sample = _random_sample(rng, height, width, int(rng.integers(0, 12)))
    out = PairAugment(out_hw, train=bool(seed % 4), expand_max=float(rng.uniform(1, 4)))(sample, rng)
    assert out.visible.shape == (*out_hw, 3) and out.thermal.shape == (*out_hw, 1) and out.mask.shape == out_hw
    assert out.mask.max() < 9
    for branch in BRANCHES:
        b = out.boxes[branch]
        assert b.shape == (len(out.labels[branch]), 4)
        assert len(b) <= len(sample.boxes[branch])
        assert np.all(b >= -1e-3) and np.all(b[:, [0, 2]] <= out_hw[1] + 1e-3) and np.all(b[:, [1, 3]] <= out_hw[0] + 1e-3)
        assert np.all(b[:, 2] >= b[:, 0]) and np.all(b[:, 3] >= b[:, 1])
