"""Optional registration warp of the visible frame into the thermal camera's pixel grid.

Reads the YAML written by ``msmine calibrate register`` with :mod:`msmine.calibration_files` (the
ground floor's file format; numpy, OpenCV and PyYAML only).
"""

from __future__ import annotations

from pathlib import Path

from msmine.feeds import Warp


def load_warp(path: str | Path | None) -> Warp | None:
    """A function warping a visible frame into the thermal grid, or None without a registration."""
    if not path:
        return None
    from msmine.calibration_files import apply_registration, load_registration

    reg = load_registration(Path(path))
    return lambda visible: apply_registration(visible, reg)
