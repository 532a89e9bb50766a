"""Benchmark the selector: one frame's scoring + aggregation, and one streaming decision.

The paper's detector at 640x512: 6 pyramid levels (80x64, 40x32, 20x16, 10x8, 5x4, 3x2
locations with 4, 6, 6, 6, 4, 4 anchors) = 30,664 anchors. Runs on one core.

    .venv/bin/python bench/bench_selector.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from msmine import selector

LEVELS = [(64, 80, 4), (32, 40, 6), (16, 20, 6), (8, 10, 6), (4, 5, 4), (2, 3, 4)]


def frame(rng: np.random.Generator, classes: int | None, dtype=np.float32):
    per_level = []
    for h, w, k in LEVELS:
        if classes is None:
            pv = rng.random((h, w, k), dtype=np.float32).astype(dtype)
            pt = rng.random((h, w, k), dtype=np.float32).astype(dtype)
        else:
            pv = rng.dirichlet(np.ones(classes), size=(h, w, k)).astype(dtype)
            pt = rng.dirichlet(np.ones(classes), size=(h, w, k)).astype(dtype)
        per_level.append((pv, pt))
    return per_level


def score_frame(per_level, kind: str) -> float:
    maps = [selector.inconsistency(pv, pt, kind=kind) for pv, pt in per_level]
    return selector.scale_balanced_mean(maps, batched=False)


def time_median(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--frames", type=int, default=200_000, help="frames for the streaming benchmark")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = np.random.default_rng(0)
    anchors = sum(h * w * k for h, w, k in LEVELS)
    print(f"frame: {len(LEVELS)} levels, {anchors} anchors, one core")
    for label, classes, dtype in [
        ("binary  float32", None, np.float32),
        ("binary  float64", None, np.float64),
        ("categorical C=4 float32", 4, np.float32),
    ]:
        data = frame(rng, classes, dtype)
        kind = "binary" if classes is None else "categorical"
        med = time_median(lambda data=data, kind=kind: score_frame(data, kind), args.repeats)
        print(f"score + scale-balanced mean, {label:24s}: median {med * 1e3:.3f} ms  ({med * 1e3 / 1.0:.2f} x the 1 ms budget)")

    scores = rng.random(args.frames) ** 4
    sel = selector.StreamingSelector(selector.StreamConfig(budget=100, window_s=3600.0))
    start = time.perf_counter()
    for i, s in enumerate(scores):
        sel.push(i, s, i / 30.0)
    per_frame = (time.perf_counter() - start) / args.frames
    print(f"streaming decision: {per_frame * 1e6:.2f} us per frame over {args.frames} frames at 30 fps "
          f"({per_frame / 20e-6:.2f} x the 20 us budget); kept {sel.stats['kept']}, threshold {sel.threshold:.3f}")


if __name__ == "__main__":
    main()
