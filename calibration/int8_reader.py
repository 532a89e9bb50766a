"""INT8 calibration data: real camera pairs fed to onnxruntime's quantiser with BOTH inputs.

``PairCalibrationReader`` is an ``onnxruntime.quantization.CalibrationDataReader`` that yields
``{"visible": uint8 [B, H, W, 3], "thermal": uint8 [B, H, W, 1]}`` batches, made by
:func:`msmine.feeds.feeds` exactly as the device makes them. Any iterable of such dicts works as calibration
data (cf. Polygraphy's calibrator); this one reads a folder of pairs or a clip.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from msmine.calibration.pairs import iter_pairs
from msmine.errors import UserError
from msmine.feeds import batch, feeds

log = logging.getLogger(__name__)


def calibration_batches(source: str | Path, input_size: tuple[int, int], limit: int = 64, split: str = "train",
                        batch_size: int = 1) -> list[dict[str, np.ndarray]]:
    """Up to ``limit`` real pairs as model-input batches (decoded once, kept in memory)."""
    if limit < 1:
        raise UserError(f"the number of calibration pairs must be >= 1, got {limit}")
    batches, current = [], []
    for _, visible, thermal in iter_pairs(source, split=split, limit=limit):
        current.append(feeds(visible, thermal, input_size, rgb=True))
        if len(current) == batch_size:
            batches.append(batch(current))
            current = []
    if current:
        batches.append(batch(current))
    if not batches:
        raise UserError(f"no calibration pairs found in {source}")
    log.info("read %d real pairs from %s", sum(b["visible"].shape[0] for b in batches), source)
    return batches


def _reader_base():
    from onnxruntime.quantization import CalibrationDataReader

    return CalibrationDataReader


class PairCalibrationReader(_reader_base()):
    """Feeds real pairs (both inputs) to ``onnxruntime.quantization.quantize_static``."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self.batches = list(batches)
        self._iter: Iterator[dict[str, np.ndarray]] = iter(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Serve only batches [start, end): onnxruntime's strided calibration (bounded memory)."""
        self._iter = iter(self.batches[start_index:end_index])

    def __len__(self) -> int:
        return len(self.batches)
