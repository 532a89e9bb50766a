"""CPU training figures: step time, pool scoring time, peak memory.

    .venv/bin/python bench/bench_train.py --data ../shared/data/msrs [--threads 2] [--steps 20]

* training step of the small backbone, batch 8, 320x256 (median over --steps, after 3 warm-up);
  targets: about 0.2 s on a 2-core CPU;
* scoring the 1,083-pair train pool (decode + letterbox, then forward + score), target < 30 s;
* peak RSS of this process (resource.getrusage), which holds the whole cached train split and a
  training run, target < 4 GiB.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import torch

from msmine.train.batching import collate, evaluation_view
from msmine.train.config import TrainConfig
from msmine.train.evaluate import score_pool
from msmine.train.models import build_model
from msmine.train.trainer import Trainer, seed_everything
from msmine.train.workspace import fit_model_to_dataset, open_split, prepared_pairs


def peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / 1024 if sys.platform == "darwin" else rss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig()
    cfg.batch_size = args.batch
    dataset = open_split(args.data, "train")
    fit_model_to_dataset(cfg, dataset)

    t0 = time.perf_counter()
    pairs = prepared_pairs(dataset, cfg, train=True)
    decode = time.perf_counter() - t0
    seed_everything(0)
    model = build_model(cfg.model)
    trainer = Trainer(model, cfg, pairs, torch.device("cpu"))
    batches = [collate([pairs[(0, i * args.batch + j)] for j in range(args.batch)]) for i in range(args.steps + 3)]
    times = []
    for i, batch in enumerate(batches):
        t = time.perf_counter()
        trainer.run_step(batch, 1e-3)
        if i >= 3:
            times.append(time.perf_counter() - t)
    aug = []
    for i in range(50):
        t = time.perf_counter()
        pairs[(1, i)]
        aug.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    inter, _ = score_pool(model, evaluation_view(pairs), torch.device("cpu"), batch_size=32)
    scoring = time.perf_counter() - t0
    print(f"torch threads: {args.threads}")
    print(f"train step, small backbone, batch {args.batch}, 320x256: median {statistics.median(times):.3f} s "
          f"(min {min(times):.3f}, over {len(times)} steps; data augmentation excluded)")
    print(f"paired augmentation + letterbox: {statistics.median(aug) * 1000:.1f} ms per pair")
    print(f"decode + letterbox of the {len(pairs)} train pairs: {decode:.1f} s")
    print(f"pool scoring of {len(inter)} pairs (forward + score, cached pairs): {scoring:.1f} s "
          f"-> {scoring + decode:.1f} s including decoding")
    print(f"peak RSS: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
