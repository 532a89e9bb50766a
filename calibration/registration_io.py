"""Camera-pair registration file: read, write and apply a visible->thermal homography.

The format and its code live in the ground floor, :mod:`msmine.calibration_files` (the device reads
the file too); this module keeps the calibration package's import path.
"""

from __future__ import annotations

from msmine.calibration_files import (
    DIRECTION,
    Registration,
    apply_registration,
    corner_rms,
    load_registration,
    save_registration,
    transform_points,
)

__all__ = ["DIRECTION", "Registration", "apply_registration", "corner_rms", "load_registration",
           "save_registration", "transform_points"]
