"""The shared letterbox: the device maps the model's boxes and maps back exactly as training placed them."""

from __future__ import annotations

import numpy as np
import pytest

from msmine.letterbox import content_crop, letterbox, letterbox_geometry, unletterbox_normalized


@pytest.mark.parametrize(("src", "out"), [((480, 640), (256, 320)), ((480, 640), (480, 640)), ((240, 320), (320, 320)),
                                          ((512, 640), (256, 320)), ((100, 37), (64, 64))])
def test_box_round_trip_through_the_letterbox(src, out):
    h, w = src
    scale, (px, py), (x0, y0, x1, y1) = letterbox_geometry(h, w, out)
    assert x1 - x0 <= out[1] and y1 - y0 <= out[0]
    box = np.array([0.1 * w, 0.2 * h, 0.7 * w, 0.9 * h])
    # where training puts the box in the model input, normalised to the input
    in_model = np.array([box[0] * scale + px, box[1] * scale + py, box[2] * scale + px, box[3] * scale + py])
    in_model /= np.array([out[1], out[0], out[1], out[0]])
    back = unletterbox_normalized(in_model, src, out)
    np.testing.assert_allclose(back, [0.1, 0.2, 0.7, 0.9], atol=1e-9)


def test_letterbox_pads_centred_with_the_fill():
    img = np.full((480, 640, 3), 200, np.uint8)
    out, scale, (px, py) = letterbox(img, (256, 320))
    assert out.shape == (256, 320, 3) and scale == pytest.approx(0.5)
    assert (px, py) == (0, 8)
    assert (out[:8] == 0).all() and (out[-8:] == 0).all() and (out[8:-8] == 200).all()
    grey, _, _ = letterbox(np.zeros((480, 640, 1), np.uint8), (256, 320), fill=7)
    assert grey.shape == (256, 320, 1) and grey[0, 0, 0] == 7


def test_content_crop_drops_the_padding_rows():
    level = np.zeros((32, 40))
    level[:1] = level[-1:] = 9.0  # rows that see only padding (8 of 256 input rows = 1 of 32)
    crop = content_crop(level, (480, 640), (256, 320))
    assert crop.shape == (30, 40) and crop.max() == 0.0
