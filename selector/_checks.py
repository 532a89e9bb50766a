"""Input checks shared by the scoring functions: clear errors stating expected vs actual."""

from __future__ import annotations

import numpy as np


def as_probabilities(value, name: str) -> np.ndarray:
    """Return ``value`` as a float array of probabilities, or raise ``ValueError``.

    Accepts Python scalars, lists and arrays. float32 stays float32 (speed); everything else
    becomes float64.
    """
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
                                   or arr.dtype == bool):
        raise ValueError(f"{name}: expected an array of probabilities, got dtype {arr.dtype}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.size:
        lo = arr.min()
        hi = arr.max()
        if np.isnan(lo) or np.isnan(hi):
            raise ValueError(f"{name}: expected probabilities in [0, 1], got NaN")
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{name}: expected probabilities in [0, 1], got values in [{lo:g}, {hi:g}]")
    return arr


def broadcast_pair(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{names[0]} and {names[1]}: expected equal or broadcastable shapes, got {a.shape} and {b.shape}"
        ) from None
    if a.dtype != b.dtype:
        a = a.astype(np.float64)
        b = b.astype(np.float64)
    return np.broadcast_to(a, shape), np.broadcast_to(b, shape)


def check_distribution(p: np.ndarray, name: str, atol: float = 1e-3) -> None:
    """A categorical input must have a class axis whose entries sum to 1."""
    if p.ndim == 0:
        raise ValueError(f"{name}: kind='categorical' expects a last class axis, got a scalar")
    if p.shape[-1] < 2:
        raise ValueError(f"{name}: kind='categorical' expects at least 2 classes on the last axis, got {p.shape[-1]}")
    if p.size:
        sums = p.sum(axis=-1)
        worst = float(np.max(np.abs(sums - 1.0)))
        if worst > atol:
            raise ValueError(f"{name}: expected class probabilities summing to 1 on the last axis, got sums off by {worst:.3g}")
