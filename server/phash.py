"""Perceptual hash of a pair (dHash of the visible and of the thermal image) for near-duplicate removal."""

from __future__ import annotations

import cv2
import numpy as np

HASH_BITS = 64


def dhash(image_bytes: bytes) -> int:
    """64-bit difference hash of an encoded image (PNG/JPEG); raises ValueError if it cannot be decoded."""
    buf = np.frombuffer(image_bytes, dtype=np.uint8)
    gray = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_8)  # JPEG decodes at 1/8 scale: fast
    if gray is None:
        gray = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if gray is None or gray.size == 0:
        raise ValueError("image cannot be decoded")
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def to_unsigned(value: int) -> int:
    return value & ((1 << 64) - 1)


def popcount64(values: np.ndarray) -> np.ndarray:
    """Bit count of each uint64."""
    v = np.ascontiguousarray(values, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(v).astype(np.int64)
    return np.unpackbits(v.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1).astype(np.int64)


def pair_distance(hv: np.ndarray, ht: np.ndarray, v: int, t: int) -> np.ndarray:
    """Hamming distance of the pair (v, t) to each pair in (hv, ht); all uint64."""
    return popcount64(hv ^ np.uint64(to_unsigned(v))) + popcount64(ht ^ np.uint64(to_unsigned(t)))
