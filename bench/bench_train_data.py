"""Benchmark the data pipeline on real MSRS pairs: open, annotations, decode, augment, metrics.

Prints milliseconds per pair (median of the per-pair times, best of 3 passes) on one core.

    .venv/bin/python bench/bench_train_data.py [--data ../shared/data/msrs] [--size 256 320] [--pairs 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from msmine.train.data import PairAugment, open_dataset  # noqa: E402
from msmine.train.metrics import coco_detection_metrics, log_average_miss_rate  # noqa: E402

cv2.setNumThreads(1)


def per_item_ms(fn, items, passes: int = 3) -> float:
    """Best (over `passes`) median milliseconds per item: the machine is shared, so take the quietest pass."""
    medians = []
    for _ in range(passes):
        times = []
        for item in items:
            start = time.perf_counter()
            fn(item)
            times.append((time.perf_counter() - start) * 1000)
        medians.append(statistics.median(times))
    return min(medians)


def main() -> int:
    repo = Path(__file__).resolve().parents[1]
    default = Path(os.environ.get("MSMINE_DATA", repo.parent / "shared" / "data")) / "msrs"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 320), metavar=("H", "W"))
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args()

    start = time.perf_counter()
    train = open_dataset(args.data, "train")
    print(f"open train split ({len(train)} pairs): {(time.perf_counter() - start) * 1000:.0f} ms")
    indices = range(min(args.pairs, len(train)))
    rng = np.random.default_rng(0)
    augment = PairAugment(tuple(args.size), train=True)
    letterbox_only = PairAugment(tuple(args.size), train=False)
    samples = [train[i] for i in indices]

    print(f"annotations() without images: {per_item_ms(train.annotations, indices):.2f} ms/pair")
    boxes_only = per_item_ms(lambda i: train.annotations(i, with_mask=False), indices)
    print(f"annotations(with_mask=False): {boxes_only:.2f} ms/pair")
    print(f"read pair (2 JPEG + mask PNG + 3 label files): {per_item_ms(train.__getitem__, indices):.2f} ms/pair")
    print(f"augment train=True to {args.size[0]}x{args.size[1]}: "
          f"{per_item_ms(lambda s: augment(s, rng), samples):.2f} ms/pair")
    print(f"augment train=False (letterbox): {per_item_ms(lambda s: letterbox_only(s, rng), samples):.2f} ms/pair")
    print(f"read + augment: {per_item_ms(lambda i: augment(train[i], rng), indices):.2f} ms/pair")

    test = open_dataset(args.data, "test")
    annotations = [test.annotations(i) for i in range(len(test))]
    gts = [(a.boxes["fused"], a.labels["fused"]) for a in annotations]
    jitter = np.random.default_rng(1)
    preds = []
    for boxes, labels in gts:
        noisy = boxes + jitter.normal(0, 2, boxes.shape).astype(np.float32)
        preds.append((noisy, jitter.random(len(boxes)), labels))
    start = time.perf_counter()
    result = coco_detection_metrics(gts, preds, len(test.class_names))
    coco_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    lamr = log_average_miss_rate(gts, preds)
    lamr_ms = (time.perf_counter() - start) * 1000
    print(f"COCO metrics on {len(test)} test pairs ({sum(len(g[0]) for g in gts)} boxes): {coco_ms:.0f} ms "
          f"(mAP {result['mAP']:.3f} for 2-px jittered ground truth)")
    print(f"LAMR on the same: {lamr_ms:.0f} ms (LAMR {lamr:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
