"""Upload-threshold calibration: the score threshold that yields a target upload rate.

From a recorded stream of per-pair scores at a known frame rate, a target of R uploads per hour
is a fraction ``R / (fps * 3600)`` of the frames; the threshold is the score quantile that leaves
that fraction above it. Pure numpy (no torch): the device can run it too.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from pathlib import Path

import numpy as np

from msmine.calibration_files import ThresholdFile, load_threshold, save_threshold  # noqa: F401 (re-exported)
from msmine.errors import UserError

log = logging.getLogger(__name__)

SCORE_KEYS = ("score", "inconsistency")
_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0,
          "day": 86400.0, "d": 86400.0}


# What ``msmine calibrate threshold`` prints and writes: the threshold.yaml format of the ground floor
# (``msmine.calibration_files``), which ``edge-runtime --threshold-file`` reads with ``load_threshold``.
ThresholdResult = ThresholdFile


def parse_rate(text: str) -> float:
    """``"100/hour"``, ``"5/min"``, ``"0.5/s"``, ``"2400/day"`` -> uploads per hour."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)\s*/\s*([a-z]+?)s?\s*", str(text).lower())
    if not match or match.group(2) not in _UNITS:
        raise UserError(f"--target-rate must look like 100/hour, 5/min or 0.5/s, got {text!r}")
    value = float(match.group(1))
    if value <= 0:
        raise UserError(f"--target-rate must be positive, got {text!r}")
    return value * 3600.0 / _UNITS[match.group(2)]


def _key_of(fields: list[str], column: str | None, path: Path) -> str:
    if column:
        if column not in fields:
            raise UserError(f"{path}: no column {column!r}; columns: {', '.join(fields)}")
        return column
    for key in SCORE_KEYS:
        if key in fields:
            return key
    raise UserError(f"{path}: no score column (tried {', '.join(SCORE_KEYS)}); pass --column")


def load_scores(path: str | Path, column: str | None = None) -> tuple[np.ndarray, str]:
    """Scores from .npy (1-D), .csv (header row; column ``score`` / ``inconsistency`` or --column)
    or .jsonl (one JSON object a line, same keys). Returns (float64 array, key used)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"scores file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise UserError(f"cannot read scores {path}: {exc}") from None
        if arr.dtype.names:
            key = _key_of(list(arr.dtype.names), column, path)
            arr = arr[key]
        else:
            key = column or "score"
        values = np.asarray(arr, dtype=np.float64).ravel()
    elif suffix == ".csv":
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            key = _key_of(list(reader.fieldnames or []), column, path)
            values_list = []
            for lineno, row in enumerate(reader, start=2):
                try:
                    values_list.append(float(row[key]))
                except (TypeError, ValueError):
                    raise UserError(f"{path}:{lineno}: {key}={row.get(key)!r} is not a number") from None
        values = np.asarray(values_list, dtype=np.float64)
    elif suffix in (".jsonl", ".ndjson"):
        values_list, key = [], column
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{lineno}: not JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object")
            key = key or _key_of(list(obj), None, path)
            try:
                values_list.append(float(obj[key]))
            except (KeyError, TypeError, ValueError):
                raise UserError(f"{path}:{lineno}: {key!r} missing or not a number") from None
        values = np.asarray(values_list, dtype=np.float64)
        key = key or "score"
    else:
        raise UserError(f"scores file {path}: expected .npy, .csv or .jsonl")
    if values.size == 0:
        raise UserError(f"scores file {path} holds no scores")
    if not np.all(np.isfinite(values)):
        raise UserError(f"scores file {path} holds {int((~np.isfinite(values)).sum())} non-finite scores")
    return values, key


def threshold_for_rate(scores: np.ndarray, target_per_hour: float, fps: float, score_key: str = "score") -> ThresholdResult:
    """The threshold t such that the fraction of scores > t is the target upload fraction."""
    if not (fps > 0 and math.isfinite(fps)):
        raise UserError(f"--fps must be positive, got {fps}")
    scores = np.asarray(scores, dtype=np.float64).ravel()
    frames_per_hour = fps * 3600.0
    fraction = target_per_hour / frames_per_hour
    if fraction >= 1.0:
        log.warning("target rate %.1f/hour >= frame rate %.1f/hour: every pair is uploaded", target_per_hour,
                    frames_per_hour)
        threshold = float(np.nextafter(scores.min(), -np.inf))
    else:
        ordered = np.sort(scores)
        keep = int(math.floor(fraction * len(ordered)))  # how many recorded frames may pass
        if keep == 0:
            threshold = float(ordered[-1])
            log.warning("%d recorded scores are too few for a fraction of %.2e: the threshold is the maximum "
                        "(record at least %d frames)", len(ordered), fraction, int(math.ceil(1 / fraction)))
        else:
            threshold = float(ordered[len(ordered) - keep - 1])
    expected = float(np.mean(scores > threshold) * frames_per_hour)
    return ThresholdFile(threshold=threshold, score_key=score_key, target_per_hour=float(target_per_hour),
                         expected_per_hour=expected, fps=float(fps), fraction=float(min(fraction, 1.0)),
                         n_scores=int(len(scores)))
