"""Perceptual hash of a pair (dHash of the visible and of the thermal image) for near-duplicate removal.

One definition for every part that compares pairs by appearance: the server's upload ranking
(hashes of the stored files) and ``msmine al --dedupe-hash`` (hashes of the decoded pool images).
"""

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
    return dhash_image(gray)


def dhash_image(image: np.ndarray) -> int:
    """64-bit difference hash of a decoded image (H x W grey, H x W x 1, or H x W x 3 RGB)."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"image: expected a non-empty grey or RGB image, got shape {img.shape}")
    small = cv2.resize(img, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
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
