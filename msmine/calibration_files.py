"""The files calibration writes and the device reads: ``registration.yaml`` and ``threshold.yaml``.

The device <-> calibration contract (as :mod:`msmine.wire` is the device <-> server one); numpy,
OpenCV and PyYAML only, so ``edge-runtime`` reads both without the calibration package.

``registration.yaml`` (``msmine calibrate register``)::

    homography: [[h00, h01, h02], [h10, h11, h12], [h20, h21, h22]]
    direction: visible_to_thermal     # maps visible pixel coordinates to thermal ones
    image_size: {visible: [W, H], thermal: [W, H]}
    rms_px: 0.41                      # RMS reprojection / corner error of the estimate, pixels
    method: checkerboard+ecc          # how it was estimated

``apply_registration(visible, reg)`` warps a visible frame into the thermal camera's pixel grid,
so the pair fed to the model is aligned.

``threshold.yaml`` (``msmine calibrate threshold``; :class:`ThresholdFile`)::

    threshold: 0.0123                 # upload a pair when its score is > threshold
    score_key: inconsistency          # which score it thresholds
    target_per_hour: 100.0            # the rate it was calibrated for ...
    expected_per_hour: 98.7           # ... and the rate it gives on the recorded scores
    fps: 30.0
    fraction: 0.000926
    n_scores: 5400
    source: model.onnx on clip/       # what the scores came from
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from msmine.errors import UserError

DIRECTION = "visible_to_thermal"


@dataclass
class Registration:
    """A visible->thermal homography and what it was estimated from."""

    homography: np.ndarray  # 3x3 float64, maps visible pixel (x, y, 1) to thermal pixel coordinates
    visible_size: tuple[int, int]  # (width, height) of the visible frames it was estimated on
    thermal_size: tuple[int, int]  # (width, height) of the thermal frames = size of the warped output
    rms_px: float  # RMS error of the estimate in thermal pixels (corner / point reprojection)
    method: str  # e.g. "checkerboard", "points", "ecc", "checkerboard+ecc"
    direction: str = DIRECTION  # only "visible_to_thermal" is written

    def to_dict(self) -> dict:
        return {
            "homography": [[float(v) for v in row] for row in np.asarray(self.homography, dtype=np.float64)],
            "direction": self.direction,
            "image_size": {"visible": list(map(int, self.visible_size)), "thermal": list(map(int, self.thermal_size))},
            "rms_px": float(self.rms_px),
            "method": self.method,
        }


def save_registration(reg: Registration, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(reg.to_dict(), sort_keys=False))
    return path


def _size(value, path: Path, key: str) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise UserError(f"registration file {path}: image_size.{key} must be [width, height], got {value!r}")
    try:
        w, h = int(value[0]), int(value[1])
    except (TypeError, ValueError):
        raise UserError(f"registration file {path}: image_size.{key} must hold integers, got {value!r}") from None
    if w <= 0 or h <= 0:
        raise UserError(f"registration file {path}: image_size.{key} must be positive, got {value!r}")
    return w, h


def _read_yaml(path: Path, what: str):
    """The YAML document of a calibration file; missing or unparsable is a UserError naming it."""
    if not path.is_file():
        raise UserError(f"{what} file not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} file {path} is not valid YAML: {exc}") from None


def load_registration(path: str | Path) -> Registration:
    """Read a registration YAML file; any problem raises UserError naming the file."""
    path = Path(path)
    data = _read_yaml(path, "registration")
    if not isinstance(data, dict):
        raise UserError(f"registration file {path} must hold a mapping")
    missing = [k for k in ("homography", "direction", "image_size") if k not in data]
    if missing:
        raise UserError(f"registration file {path} lacks key(s): {', '.join(missing)}")
    if data["direction"] != DIRECTION:
        raise UserError(f"registration file {path}: direction must be {DIRECTION!r}, got {data['direction']!r}")
    try:
        hom = np.asarray(data["homography"], dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"registration file {path}: homography must be a 3x3 list of numbers") from None
    if hom.shape != (3, 3) or not np.all(np.isfinite(hom)):
        raise UserError(f"registration file {path}: homography must be a finite 3x3 matrix, got shape {hom.shape}")
    if abs(np.linalg.det(hom)) < 1e-12:
        raise UserError(f"registration file {path}: homography is singular")
    sizes = data["image_size"]
    if not isinstance(sizes, dict) or "visible" not in sizes or "thermal" not in sizes:
        raise UserError(f"registration file {path}: image_size must be {{visible: [W, H], thermal: [W, H]}}")
    try:
        rms = float(data.get("rms_px", float("nan")))
    except (TypeError, ValueError):
        raise UserError(f"registration file {path}: rms_px must be a number") from None
    return Registration(
        homography=hom / hom[2, 2] if hom[2, 2] != 0 else hom,
        visible_size=_size(sizes["visible"], path, "visible"),
        thermal_size=_size(sizes["thermal"], path, "thermal"),
        rms_px=rms,
        method=str(data.get("method", "unknown")),
    )


def apply_registration(visible_img: np.ndarray, reg: Registration, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Warp a visible frame (H x W x C uint8) into the thermal camera's pixel grid.

    The output has the thermal frame's size; pixels outside the visible field of view are 0.
    A frame whose size differs from the one the registration was estimated on is rescaled first.
    """
    if visible_img.ndim not in (2, 3):
        raise ValueError(f"expected an H x W or H x W x C image, got shape {visible_img.shape}")
    h, w = visible_img.shape[:2]
    hom = np.asarray(reg.homography, dtype=np.float64)
    vw, vh = reg.visible_size
    if (w, h) != (vw, vh):
        # the homography was estimated on (vw, vh): map this frame's pixels there first
        hom = hom @ np.diag([vw / w, vh / h, 1.0])
    if np.allclose(hom, np.eye(3)) and (w, h) == tuple(reg.thermal_size):
        return visible_img
    return cv2.warpPerspective(visible_img, hom, tuple(int(v) for v in reg.thermal_size), flags=interpolation)


def transform_points(points: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """Apply a 3x3 homography to [N, 2] points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    homog = np.hstack([pts, np.ones((len(pts), 1))]) @ np.asarray(homography, dtype=np.float64).T
    return homog[:, :2] / homog[:, 2:3]


def corner_rms(h_est: np.ndarray, h_true: np.ndarray, width: int, height: int) -> float:
    """RMS distance (pixels) between the image corners mapped by two homographies."""
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float64)
    diff = transform_points(corners, h_est) - transform_points(corners, h_true)
    return float(np.sqrt(np.mean(np.sum(diff**2, axis=1))))


# ---- threshold.yaml ------------------------------------------------------------------------------

@dataclass
class ThresholdFile:
    """What ``msmine calibrate threshold`` writes and ``edge-runtime --threshold-file`` reads."""

    threshold: float  # upload a pair when its score is > threshold
    score_key: str = "inconsistency"  # which score it thresholds
    target_per_hour: float = float("nan")  # the requested upload rate
    expected_per_hour: float = float("nan")  # the rate the threshold gives on the recorded scores
    fps: float = float("nan")  # pair rate of the recorded stream
    fraction: float = float("nan")  # target fraction of pairs uploaded
    n_scores: int = 0  # how many scores it was computed from
    source: str = ""  # what the scores came from

    def to_dict(self) -> dict:
        return {k: (float(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def save_threshold(result: ThresholdFile, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(result.to_dict(), sort_keys=False))
    return path


def _number(data: dict, key: str, path: Path, default: float = float("nan")) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"threshold file {path}: {key} must be a number, got {value!r}")
    return float(value)


def load_threshold(path: str | Path) -> ThresholdFile:
    """Read a ``threshold.yaml``; any problem raises UserError naming the file."""
    path = Path(path)
    data = _read_yaml(path, "threshold")
    if not isinstance(data, dict) or "threshold" not in data:
        raise UserError(f"threshold file {path} must hold a mapping with a threshold (written by "
                        f"`msmine calibrate threshold`)")
    threshold = _number(data, "threshold", path)
    if not math.isfinite(threshold):
        raise UserError(f"threshold file {path}: threshold must be finite, got {threshold}")
    key = data.get("score_key", "inconsistency")
    if not isinstance(key, str) or not key:
        raise UserError(f"threshold file {path}: score_key must be a score name, got {key!r}")
    n = data.get("n_scores", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise UserError(f"threshold file {path}: n_scores must be a non-negative integer, got {n!r}")
    return ThresholdFile(
        threshold=threshold, score_key=str(key), target_per_hour=_number(data, "target_per_hour", path),
        expected_per_hour=_number(data, "expected_per_hour", path), fps=_number(data, "fps", path),
        fraction=_number(data, "fraction", path), n_scores=n, source=str(data.get("source", "")),
    )
