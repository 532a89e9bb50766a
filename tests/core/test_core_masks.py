"""msmine.masks: class-id PNGs round-trip; every bad mask is one UserError line."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from msmine.errors import UserError
from msmine.letterbox import letterbox
from msmine.masks import decode_mask_png, encode_mask_png, unletterbox_mask


def test_round_trip_is_exact_and_greyscale_8bit():
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 9, size=(48, 64), dtype=np.int64)
    data = encode_mask_png(mask)
    assert data[25] == 0 and data[24] == 8  # IHDR colour type 0 (greyscale), bit depth 8
    out = decode_mask_png(data, expected_size=(64, 48), num_classes=9)
    assert out.dtype == np.uint8 and out.shape == (48, 64)
    np.testing.assert_array_equal(out, mask)


@pytest.mark.parametrize(
    "make, kwargs, reason",
    [
        (lambda: encode_mask_png(np.zeros((4, 6), np.uint8)), {"expected_size": (4, 6)}, "the image is 4x6"),
        (lambda: encode_mask_png(np.full((4, 6), 9, np.uint8)), {"num_classes": 9}, "class id 9"),
        (lambda: encode_mask_png(np.zeros((4, 6), np.uint8))[:40], {}, "corrupt"),
        (lambda: b"GIF89a" + bytes(40), {}, "not a PNG"),
        (lambda: cv2.imencode(".png", np.zeros((4, 6, 3), np.uint8))[1].tobytes(), {}, "single channel"),
        (lambda: cv2.imencode(".png", np.zeros((4, 6), np.uint16))[1].tobytes(), {}, "bit depth 16"),
    ],
)
def test_bad_masks_are_refused_with_a_reason(make, kwargs, reason):
    with pytest.raises(UserError, match=reason):
        decode_mask_png(make(), **kwargs)


def test_encode_refuses_non_id_arrays():
    with pytest.raises(UserError, match="class ids"):
        encode_mask_png(np.full((2, 2), 300))
    with pytest.raises(UserError, match="integer"):
        encode_mask_png(np.zeros((2, 2), np.float32))


def test_unletterbox_mask_inverts_the_letterbox():
    # a 30 x 80 camera mask with a vertical band, letterboxed into 64 x 64 and sampled back
    src = np.zeros((30, 80), np.uint8)
    src[:, 20:40] = 3
    boxed, _, _ = letterbox(src, (64, 64), interpolation=cv2.INTER_NEAREST)
    back = unletterbox_mask(boxed, (30, 80), (64, 64))
    assert back.shape == (30, 80)
    assert (back == src).mean() > 0.95
    # a stride-8 grid (8 x 8 cells over the 64 x 64 input) maps back to the same size
    assert unletterbox_mask(boxed[::8, ::8], (30, 80), (64, 64)).shape == (30, 80)
