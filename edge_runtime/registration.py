"""Optional registration warp of the visible frame into the thermal camera's pixel grid.

Reads the YAML written by ``msmine calibrate register`` with :mod:`msmine.calibration_files` (the
ground floor's file format; numpy, OpenCV and PyYAML only). ``_fallback`` reads the minimal form
``{homography: 3x3 visible->thermal, image_size: {thermal: [W, H]}}``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

from msmine.errors import UserError
from msmine.feeds import Warp


def _fallback(path: Path) -> Warp:
    if not path.is_file():
        raise UserError(f"registration file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
        hom = np.asarray(data["homography"], dtype=np.float64)
    except (yaml.YAMLError, TypeError, KeyError, ValueError):
        raise UserError(f"registration file {path} must hold homography: a 3x3 list of numbers") from None
    if hom.shape != (3, 3) or not np.all(np.isfinite(hom)):
        raise UserError(f"registration file {path}: homography must be a finite 3x3 matrix")
    size = (data.get("image_size") or {}).get("thermal")

    def warp(visible: np.ndarray) -> np.ndarray:
        out = tuple(size) if size else (visible.shape[1], visible.shape[0])
        return cv2.warpPerspective(visible, hom, out)

    return warp


def load_warp(path: str | Path | None) -> Warp | None:
    """A function warping a visible frame into the thermal grid, or None without a registration."""
    if not path:
        return None
    from msmine.calibration_files import apply_registration, load_registration

    reg = load_registration(Path(path))
    return lambda visible: apply_registration(visible, reg)
