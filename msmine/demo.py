"""`msmine demo`: the README's main job on an embedded default.

Current form: scores a small built-in pool of three-level detector predictions (some pairs with a
failing visible or thermal branch) and prints the pairs the selector would send for labelling.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-b", "--budget", type=int, default=5, help="pairs to select (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the built-in example pool")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    import selector
    from msmine.cli_select import example_pool, score_pool

    pool = example_pool(seed=args.seed)
    scores = score_pool(pool, "inconsistency", "binary", 0.5)
    ids, chosen = selector.select_top(scores, args.budget, ids=[str(i) for i in pool["ids"]])
    print(f"scored {len(scores)} pairs (3 pyramid levels each) by cross-modality inconsistency")
    print(f"median score {float(np.median(scores)):.4f}; top {len(ids)}:")
    for rank, (i, s) in enumerate(zip(ids, chosen), start=1):
        print(f"  {rank:2d}. {i}  {s:.4f} bits")
    return 0
