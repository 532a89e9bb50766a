"""Benchmark the selector: one frame's scoring + aggregation, and one streaming decision.

The paper's detector at 640x512: 6 pyramid levels (80x64, 40x32, 20x16, 10x8, 5x4, 3x2
locations with 4, 6, 6, 6, 4, 4 anchors) = 30,664 anchors. Runs on one core.

Also the per-frame score variants (top-k mean, detection-level, segmentation regions, stratum
z-score), the streaming decision with power sampling / stratum normalisation, and one pool
batch selection (``select_batch``). The device target: the per-pair mining path under 1 % of a
33 ms frame (330 us).

    .venv/bin/python bench/bench_selector.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from msmine import selector

CLOCK = time.perf_counter  # --clock cpu: time.process_time (this process's CPU time, for a shared machine)
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
        start = CLOCK()
        fn()
        samples.append(CLOCK() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--frames", type=int, default=200_000, help="frames for the streaming benchmark")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: perf_counter; cpu: process_time (less disturbed by other jobs on a shared machine)")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = np.random.default_rng(0)
    anchors = sum(h * w * k for h, w, k in LEVELS)
    print(f"frame: {len(LEVELS)} levels, {anchors} anchors, one core, {args.clock} clock")
    for label, classes, dtype in [
        ("binary  float32", None, np.float32),
        ("binary  float64", None, np.float64),
        ("categorical C=4 float32", 4, np.float32),
    ]:
        data = frame(rng, classes, dtype)
        kind = "binary" if classes is None else "categorical"
        med = time_median(lambda data=data, kind=kind: score_frame(data, kind), args.repeats)
        print(f"score + scale-balanced mean, {label:24s}: median {med * 1e3:.3f} ms  ({med * 1e3 / 1.0:.2f} x the 1 ms budget)")

    variants(rng, args.repeats)

    scores = rng.random(args.frames) ** 4
    for label, extra in [("default", {}), ("power sampling beta=2", {"sampling": "power", "sampling_beta": 2.0}),
                         ("stratum z + softmax", {"normalize_strata": True, "sampling": "softmax"})]:
        sel = selector.StreamingSelector(selector.StreamConfig(budget=100, window_s=3600.0, **extra))
        strata = ("day", "night")
        start = CLOCK()
        for i, s in enumerate(scores):
            sel.push(i, s, i / 30.0, stratum=strata[(i // 900) % 2])
        per_frame = (CLOCK() - start) / args.frames
        print(f"streaming decision, {label:22s}: {per_frame * 1e6:.2f} us per frame over {args.frames} frames "
              f"at 30 fps ({per_frame / 20e-6:.2f} x the 20 us budget); kept {sel.stats['kept']}, "
              f"threshold {sel.threshold:.3f}")

    pool(rng, max(3, args.repeats // 30))


def report(label: str, seconds: float) -> None:
    print(f"{label:58s}: median {seconds * 1e6:8.1f} us  ({seconds / 0.033 * 100:.3f} % of a 33 ms frame)")


def variants(rng: np.random.Generator, repeats: int) -> None:
    """The per-frame score variants on one frame of the paper's detector (float32 maps)."""
    anchors = [rng.random((h, w, k), dtype=np.float32) for h, w, k in LEVELS]  # per-anchor inconsistency
    maps = [a.mean(axis=-1) for a in anchors]  # the exported per-level maps [h_l, w_l]
    sizes = [0.1 + 0.16 * i for i in range(len(LEVELS))]
    flat = np.concatenate([a.reshape(-1) for a in anchors])
    report("paper: scale-balanced mean of the 6 maps", time_median(lambda: selector.scale_balanced_mean(maps, batched=False), repeats))
    report("top-k mean, k=50, 30,664 anchors pooled", time_median(lambda: selector.topk_mean(anchors, 50, batched=False), repeats))
    report("top-k mean, k=50, 6 maps (7,665 cells) pooled", time_median(lambda: selector.topk_mean(maps, 50, batched=False), repeats))
    report("top-k mean, k=50, 6 maps per level, balanced",
           time_median(lambda: selector.topk_mean(maps, 50, per_level=True, batched=False), repeats))
    for k in (20, 100):
        corners = rng.random((k, 4))
        wh = 0.02 + 0.3 * rng.random((k, 2))
        det = np.concatenate([corners[:, :2], np.minimum(corners[:, :2] + wh, 1.0),
                              rng.random((k, 1)), rng.integers(0, 3, (k, 1))], axis=1)
        index = rng.integers(0, flat.size, k)
        report(f"detection score, {k} dets, box cells, all levels",
               time_median(lambda det=det: selector.detection_score(det, maps=maps), repeats))
        report(f"detection score, {k} dets, box cells, matched level",
               time_median(lambda det=det: selector.detection_score(det, maps=maps, level_sizes=sizes,
                                                                    reduce="max"), repeats))
        pv = rng.dirichlet(np.ones(4), size=flat.size).astype(np.float32)
        pt = rng.dirichlet(np.ones(4), size=flat.size).astype(np.float32)
        report(f"detection score, {k} dets, JS at their anchors (probs)",
               time_median(lambda det=det, index=index, pv=pv, pt=pt: selector.detection_score(
                   det, probabilities=(pv, pt), kind="categorical", anchor_index=index), repeats))
        report(f"detection score, {k} dets, decoded anchors",
               time_median(lambda det=det, index=index: selector.detection_score(
                   det, values=flat, anchor_index=index, class_weights=[1.0, 2.0, 3.0]), repeats))
    seg = rng.random((256, 320), dtype=np.float32)
    pred = rng.integers(0, 9, (256, 320))
    weights = selector.inverse_frequency_weights(rng.integers(1, 10**6, 9))
    report("segmentation region score, 256x320, 9 classes",
           time_median(lambda: selector.region_score(seg, pred, 9, class_weights=weights), repeats))
    report("segmentation region score, top-50 pixels per class",
           time_median(lambda: selector.region_score(seg, pred, 9, class_weights=weights, k=50), repeats))
    norm = selector.StratumNormalizer()
    report("stratum z-score (Welford update)", time_median(lambda: norm.update("night", 0.3), repeats))


def pool(rng: np.random.Generator, repeats: int) -> None:
    """One batch for a pool the size of MSRS's train split (server / trainer side, not per frame)."""
    n, dim = 1083, 256
    scores = rng.random(n)
    feats = rng.normal(size=(n, dim))
    frames = np.arange(n)
    hashes = rng.integers(0, 2**63, n, dtype=np.int64)
    strata = rng.integers(0, 2, n)
    full = {"features": feats, "candidate_factor": 4.0, "frames": frames, "hashes": hashes,
            "strata": strata, "quotas": "proportional", "beta": 1.0}
    for label, kwargs in [("top-b", {}), ("candidates x4 + k-center + dedupe + quotas + power", full),
                          ("cold start: ProbCover on the whole pool", {"features": feats, "cycle": 0,
                                                                         "coverage_cycles": 1})]:
        med = time_median(lambda kwargs=kwargs: selector.select_batch(scores, 50, **kwargs), repeats)
        print(f"select_batch, pool {n}, d={dim}, b=50, {label:48s}: median {med * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
