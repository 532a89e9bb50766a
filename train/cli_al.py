"""``msmine al``: the active-learning experiment (the paper's loop) with its curves.

    msmine al --data ../shared/data/msrs --task detect --strategies random,inconsistency,entropy,combined \\
        --initial 50 --step 50 --budget 300 --seeds 3 --out runs/al_det

Writes ``OUT/curves.csv`` (strategy, seed, cycle, labelled, then one column per metric),
``OUT/curves.png`` (mean +- std over seeds, fully supervised as a dashed line), ``OUT/summary.md``
and ``OUT/config.yaml``. ``--merge DIR ...`` combines the curves of several runs (e.g. one per
strategy run in parallel) into OUT.

A strategy may name a score variant (``inconsistency.topk``, ``inconsistency.detection_max``;
``msmine.strategies``); the batch options (``--candidate-factor``, ``--diversity kcenter``,
``--dedupe-window``, ``--strata illumination`` with ``--quotas`` / ``--normalize``,
``--sampling-beta``, ``--coverage-cycles``) apply to every strategy of the run. Run the same command
again on the same ``--out`` to continue an interrupted run at its next cycle (same picks).

``--val-fraction 0.2 --evaluate-on val`` holds a validation part out of the pool in contiguous
blocks of frame numbers and evaluates there (choose hyper-parameters on it); ``--val-fraction 0.2``
alone keeps the same pool and evaluates on the test split (the final figures). These are the pool and
evaluation sets of ``bench/mining_experiment.py --phase val|test``, which adds the paired comparison.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from msmine import strategies

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    from msmine.train.workspace import add_config_arguments

    parser.add_argument("--data", help="dataset root (train split = pool, test split = evaluation)")
    parser.add_argument("--task", choices=["detect", "segment"], help="detect or segment (default: config)")
    parser.add_argument("--strategies", "--strategy", dest="strategies", default="random,inconsistency",
                        help=f"comma-separated from {', '.join(strategies.NAMES)}, each optionally "
                             f"with .VARIANT from {', '.join(strategies.VARIANT_NAMES)} (msmine.strategies)")
    batch = parser.add_argument_group("batch selection (every strategy of the run; default: plain top-b)")
    batch.add_argument("--candidate-factor", type=float, default=1.0,
                       help="candidate pool of FACTOR x b by score before the diversity step (default 1)")
    batch.add_argument("--diversity", default="none", help="none | kcenter (k-center on pooled fused features)")
    batch.add_argument("--dedupe-window", type=float, default=0.0,
                       help="no two picks of one clip within this many frame numbers (0 = off)")
    batch.add_argument("--strata", default="none",
                       help="none | illumination (night = the visible image's mean luminance below --night-luminance)")
    batch.add_argument("--night-luminance", type=float, default=0.25, help="illumination threshold in [0, 1]")
    batch.add_argument("--quotas", default="none", help="none | proportional | equal (per stratum)")
    batch.add_argument("--normalize", default="none", help="none | z | rank (scores within each stratum)")
    batch.add_argument("--sampling-beta", type=float, default=float("inf"),
                       help="power sampling: draw in proportion to score ** BETA (inf = top-b, default)")
    batch.add_argument("--coverage-cycles", type=int, default=0,
                       help="the first N selections pick by ProbCover coverage (cold start), then by score")
    batch.add_argument("--variant-k", type=int, default=50, help="k of the topk / region_topk variants")
    batch.add_argument("--variant-floor", type=float, default=0.5, help="confidence floor of the detection variants")
    batch.add_argument("--class-weights", default="none",
                       help="class weights of the detection_* / region* variants: none, inverse (square-root "
                            "inverse frequency in the labelled set, recomputed every cycle), NAME=W,... or W,W,...")
    batch.add_argument("--dedupe-hash", type=int, default=-1, metavar="BITS",
                       help="no two picks whose dHash (visible and thermal side by side) differ by <= BITS of 64 "
                            "(-1 = off; for pools without frame numbers)")
    parser.add_argument("--initial", type=int, default=50, help="random pairs labelled at the start (b)")
    parser.add_argument("--step", type=int, default=50, help="pairs labelled per cycle (b)")
    parser.add_argument("--budget", type=int, default=300, help="labelled pairs at the end (B)")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0 .. K-1)")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed")
    parser.add_argument("--reference", choices=["yes", "no", "only"], default="yes",
                        help="also train the fully supervised reference on the whole pool")
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="hold this share of the train split out of the pool in contiguous blocks of frame "
                             "numbers (seed 0; 0 = none); bench/mining_experiment.py uses 0.2")
    parser.add_argument("--evaluate-on", choices=["test", "val"], default="test",
                        help="evaluate every cycle on the test split, or on the held-out part (choose "
                             "hyper-parameters there; needs --val-fraction)")
    parser.add_argument("--tag", default="", help="suffix for the strategy names in the curves (variants)")
    parser.add_argument("--merge", nargs="+", metavar="DIR", help="merge the curves.csv of these runs into --out")
    parser.add_argument("--out", required=True, help="output directory")
    add_config_arguments(parser)


def run(args) -> int:
    from msmine.config import load_config, save_config
    from msmine.errors import UserError
    from msmine.train.al import (
        ALRunner,
        BatchOptions,
        cycle_sizes,
        default_metric,
        finish_options,
        merge_runs,
    )
    from msmine.train.config import ALConfig
    from msmine.train.trainer import resolve_device
    from msmine.train.workspace import al_splits, apply_thread_limit, fit_model_to_dataset

    apply_thread_limit()
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise UserError("msmine al runs in one process (its cycles are small); run msmine train under torchrun")
    out = Path(args.out)
    import dataclasses

    own = {f.name for f in dataclasses.fields(ALConfig)}
    overrides = [o if o.split("=", 1)[0].split(".")[0] in own else f"train.{o}" for o in args.overrides]
    if args.task:
        overrides.append(f"train.model.task={args.task}")
    if args.device:
        overrides.append(f"train.device={args.device}")
    cfg = load_config(ALConfig, args.config, overrides)
    task = cfg.train.model.task
    metrics = [cfg.metric or default_metric(task)]
    metrics.append(metrics[0].replace("fused_", "fused_night_"))
    if args.merge:
        rows = merge_runs([Path(d) for d in args.merge], out, metrics, title=f"MSRS {task}")
        print(f"merged {len(rows)} rows into {out / 'curves.csv'}, {out / 'curves.png'}")
        return 0
    if not args.data:
        raise UserError("--data is required (unless --merge)")
    chosen = list(strategies.parse_list(args.strategies, task=task)) if args.reference != "only" else []
    options = BatchOptions(candidate_factor=args.candidate_factor, diversity=args.diversity,
                           dedupe_window=args.dedupe_window, strata=args.strata, night_luminance=args.night_luminance,
                           quotas=args.quotas, normalize=args.normalize, sampling_beta=args.sampling_beta,
                           coverage_cycles=args.coverage_cycles, variant_k=args.variant_k,
                           variant_floor=args.variant_floor, dedupe_hash=args.dedupe_hash)
    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    sizes = cycle_sizes(args.initial, args.step, args.budget)
    device = resolve_device(cfg.train.device)
    train_all, train_set, test_set = al_splits(args.data, cfg.train.data, args.val_fraction, args.evaluate_on)
    if args.budget > len(train_set):
        raise UserError(f"--budget {args.budget} exceeds the {len(train_set)} pairs of the pool")
    fit_model_to_dataset(cfg.train, train_all)
    options = finish_options(options, args.class_weights, cfg.train.model.class_names, chosen)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    runner = ALRunner(train_set, test_set, cfg, device, out, tag=args.tag, options=options)
    if runner.check_resume(chosen, sizes):
        print(f"continuing the run in {out} (finished cycles are kept)")
    if args.reference != "only":
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            runner.run_seed(seed, chosen, sizes)
    if args.reference != "no" and cfg.supervised_epochs > 0:
        runner.run_supervised(args.first_seed)
    rows = merge_runs([out], out, metrics, title=f"{Path(args.data).name} {task}")
    print(f"wrote {out / 'curves.csv'} ({len(rows)} rows), {out / 'curves.png'}, {out / 'summary.md'}")
    return 0


if __name__ == "__main__":  # python -m msmine.train.cli_al (without the other subcommands' imports)
    import argparse
    import sys

    from msmine.console import configure_logging, run_guarded

    _parser = argparse.ArgumentParser(prog="msmine al")
    add_arguments(_parser)
    configure_logging(False)
    sys.exit(run_guarded(run, _parser.parse_args()))
