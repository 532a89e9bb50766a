"""Shared helpers of the edge runtime tests."""

from __future__ import annotations

import cv2
import numpy as np

from msmine import wire


def png(seed: int, size: int = 16) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def make_pair(seed: int, score: float, size: int = 16) -> tuple[dict, dict[str, bytes]]:
    """A valid manifest and its files."""
    files = {"visible": png(seed, size), "thermal": png(seed + 10_000, size), "heatmap": png(seed + 20_000, size)}
    manifest = wire.build_manifest(
        device_id="test-dev", captured_at={"visible": 1000.0 + seed, "thermal": 1000.0 + seed},
        model_version="v1", model_hash="a" * 64, task="detect", score=score, image_size=(size, size),
        class_names=["person", "bicycle", "car"], files=files,
        predictions={"fused": [{"box": [0.1, 0.1, 0.2, 0.2], "score": 0.9, "class_id": 0}], "visible": [], "thermal": []},
    )
    return manifest, files
