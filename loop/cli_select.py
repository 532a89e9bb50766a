"""`msmine select`: score a pool of per-branch predictions and print the pairs worth labelling.

Input: an ``.npz`` file holding ``ids`` (optional) and, for each pyramid level ``l``, the arrays
``visible_<l>`` and ``thermal_<l>`` (and optionally ``fused_<l>``) of probabilities with a leading
pool axis: [N, ...] for foreground probabilities (``--kind binary``) or [N, ..., C] for class
probabilities (``--kind categorical``). ``--example`` uses a small built-in pool instead.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

import numpy as np

from msmine.strategies import SCORE_NAMES

log = logging.getLogger(__name__)

STRATEGIES = SCORE_NAMES  # the strategies that score saved predictions (msmine.strategies)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--predictions", type=Path, help=".npz with visible_<l>, thermal_<l> [, fused_<l>, ids]")
    src.add_argument("--example", action="store_true", help="score a small built-in example pool")
    parser.add_argument("-b", "--budget", type=int, default=10, help="how many pairs to select (default 10)")
    parser.add_argument("--kind", choices=("binary", "categorical"), default="binary")
    parser.add_argument("--strategy", choices=STRATEGIES, default="inconsistency")
    parser.add_argument("--weight", type=float, default=0.5, help="weight of the entropy term in 'combined'")
    parser.add_argument("--out", type=Path, help="write the selection as CSV here (default: stdout)")


def example_pool(n: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """A pool of ``n`` images with a 3-level detector's per-anchor foreground probabilities.

    Most images: the two branches agree. Some: the visible branch fails (night) or the thermal
    branch fails (thermal crossover) on a patch, so the branches disagree there.
    """
    rng = np.random.default_rng(seed)
    shapes = [(16, 20, 4), (8, 10, 4), (4, 5, 4)]
    arrays: dict[str, np.ndarray] = {"ids": np.array([f"pair{i:03d}" for i in range(n)])}
    failing = rng.choice(n, size=n // 4, replace=False)
    for level, shape in enumerate(shapes):
        truth = (rng.random((n, *shape)) < 0.05).astype(np.float64)
        visible = np.clip(0.1 + 0.8 * truth + rng.normal(0.0, 0.08, size=truth.shape), 0, 1)
        thermal = np.clip(0.1 + 0.8 * truth + rng.normal(0.0, 0.08, size=truth.shape), 0, 1)
        for i in failing:
            h, w = shape[0] // 2, shape[1] // 2
            target = visible if i % 2 else thermal
            target[i, :h, :w] = 1.0 - target[i, :h, :w]
        arrays[f"visible_{level}"] = visible
        arrays[f"thermal_{level}"] = thermal
        arrays[f"fused_{level}"] = np.clip(0.5 * (visible + thermal), 0, 1)
    return arrays


def load_pool(path: Path) -> dict[str, np.ndarray]:
    from msmine.errors import UserError

    if not path.is_file():
        raise UserError(f"predictions file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read predictions file {path}: {exc}") from None


def score_pool(arrays: dict[str, np.ndarray], strategy: str, kind: str, weight: float) -> np.ndarray:
    from msmine import selector
    from msmine.errors import UserError

    levels = sorted(int(k.split("_")[1]) for k in arrays if k.startswith("visible_"))
    if not levels:
        raise UserError("predictions hold no visible_<level> arrays")
    inter, intra = [], []
    for level in levels:
        for branch in ("thermal", "fused") if strategy != "inconsistency" else ("thermal",):
            if f"{branch}_{level}" not in arrays:
                raise UserError(f"predictions lack {branch}_{level} (needed by strategy {strategy!r})")
        try:
            inter.append(selector.inconsistency(arrays[f"visible_{level}"], arrays[f"thermal_{level}"], kind=kind))
            if strategy != "inconsistency":
                intra.append(selector.entropy(arrays[f"fused_{level}"], kind=kind))
        except ValueError as exc:
            raise UserError(f"level {level}: {exc}") from None
    inter_img = selector.scale_balanced_mean(inter, batched=True)
    if strategy == "inconsistency":
        return inter_img
    intra_img = selector.scale_balanced_mean(intra, batched=True)
    if strategy == "entropy":
        return intra_img
    return selector.combined(inter_img, intra_img, weight=weight)


def run(args: argparse.Namespace) -> int:
    from msmine import selector
    from msmine.errors import UserError

    if args.budget < 0:
        raise UserError(f"--budget must be >= 0, got {args.budget}")
    arrays = example_pool() if args.example else load_pool(args.predictions)
    scores = score_pool(arrays, args.strategy, args.kind, args.weight)
    n = scores.shape[0]
    ids = [str(i) for i in arrays["ids"]] if "ids" in arrays else [str(i) for i in range(n)]
    if len(ids) != n:
        raise UserError(f"predictions: {len(ids)} ids for a pool of {n}")
    chosen, chosen_scores = selector.select_top(scores, args.budget, ids=ids)
    log.info("scored %d pairs by %s; selected %d", n, args.strategy, len(chosen))
    out = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        writer = csv.writer(out)
        writer.writerow(["rank", "id", args.strategy])
        for rank, (i, s) in enumerate(zip(chosen, chosen_scores), start=1):
            writer.writerow([rank, i, f"{s:.6f}"])
    finally:
        if args.out:
            out.close()
    return 0
