"""``msmine train``: train the dual-stream three-branch model on a paired dataset.

    msmine train --data ../shared/data/msrs --task detect --out runs/det --set epochs=10
    msmine train --data data/mined --init runs/det/best.pt --replay ../shared/data/msrs --out runs/det_r1

Writes ``OUT/config.yaml`` (resolved), ``OUT/last.pt`` (every epoch), ``OUT/best.pt`` (best fused
validation metric), ``OUT/metrics.json``. ``--resume`` continues from ``OUT/last.pt``.

Retraining (``--init CKPT``): start from another run's weights (and model settings) with a fresh
optimiser and step count. ``--replay PREVIOUS_DATA`` trains on the new pairs together with the
previous training set (or ``--replay-pairs N`` of it), so a handful of pulled pairs does not pull
the model away from everything else. Validation: ``--val-data DIR``'s ``data.val_split``, else the
data's own ``data.val_split``, else the replayed set's, else ``--val-fraction`` carved out (of the
replayed pairs when there are any). The ``--init`` model is validated first; a retrained model
that is worse gets no ``best.pt`` (exit 1, one line with both figures) unless ``--force``.
``--class-map pedestrian=person`` (with ``--init``, detection) fine-tunes on a set with other class
names: the model keeps the --init classes the data maps to, their head rows from --init (an MSRS
model on a person-only LLVIP set becomes a person model); msmine.train.data.class_map.

The training itself is :func:`msmine.train.fit.fit` (also under ``torchrun --nproc_per_node N``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from msmine.errors import UserError

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    from msmine.train.workspace import add_config_arguments

    parser.add_argument("--data", required=True, help="dataset root (MSRS layout, KAIST, VOC or COCO pairs)")
    parser.add_argument("--task", choices=["detect", "segment"], help="detect or segment (default: config)")
    parser.add_argument("--out", required=True, help="output directory (checkpoints, config, metrics)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--init", metavar="CHECKPOINT",
                        help="fine-tune: start from this checkpoint's weights and model settings")
    parser.add_argument("--replay", metavar="PREVIOUS_DATA",
                        help="also train on this dataset's training split (the set the --init model learnt from)")
    parser.add_argument("--replay-pairs", type=int, default=0, metavar="N",
                        help="replay a seeded sample of N pairs of --replay (default 0: all of them)")
    parser.add_argument("--val-data", metavar="DIR",
                        help="validate on this dataset's data.val_split (default: --data's, else --replay's, "
                             "else --val-fraction held out)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of the pairs held out for validation when no validation split exists (0.2)")
    parser.add_argument("--force", action="store_true",
                        help="write best.pt even when the retrained model validates worse than --init")
    parser.add_argument("--class-map", default=None, metavar="DATASET=MODEL,...|FILE.yaml",
                        help="with --init (detection): the dataset's classes by name onto the --init model's (same "
                             "names match unasked, e.g. pedestrian=person); the model keeps the classes the data "
                             "maps to, their head rows from --init")
    add_config_arguments(parser)


def init_classes(args, cfg, init, train_set, replay, val_set):
    """Fine-tuning on a set whose classes differ from the --init model's (msmine.train.data.class_map):
    the model keeps the classes the data maps to (head rows from --init), every set is renumbered into them."""
    from msmine.train.data.class_map import (
        fine_tune_classes,
        map_classes,
        parse_class_map,
        remap_detection_heads,
    )

    mapping = parse_class_map(args.class_map)
    model_names = list(cfg.model.class_names)
    if list(train_set.class_names) == model_names and not mapping:
        return train_set, replay, val_set
    target, rows = fine_tune_classes(list(train_set.class_names), model_names, mapping)
    if target != model_names:
        init["model"] = remap_detection_heads(init["model"], rows, len(model_names))
        cfg.model.class_names, cfg.model.num_classes = list(target), len(target)
        if isinstance(init.get("model_config"), dict):
            init["model_config"] = {**init["model_config"], "class_names": list(target), "num_classes": len(target)}
        log.info("--init %s: fine-tuning its classes %s (of %s), head rows from --init", init.get("path", ""),
                 target, model_names)

    def into(dataset):  # a set of the new kind (the map applies) or of the --init model's (same names)
        if dataset is None:
            return None
        names = {n.lower() for n in dataset.class_names}
        return map_classes(dataset, target, {k: v for k, v in mapping.items() if k.lower() in names})

    return into(train_set), into(replay), into(val_set)


def training_sets(args, cfg, init=None):
    """(train dataset, validation dataset or None, a few words naming the validation set)."""
    from msmine.train.workspace import ConcatPairs, carve, has_split, open_split, sample_pairs

    d = cfg.data
    # --init of msmine pretrain's pretrain.pt (read_init made it model.pretrained) is a first training, not a retraining
    retrain = bool(args.init) and cfg.model.pretrained != str(args.init)
    train_set = open_split(args.data, d.train_split, d.fmt, d.limit)
    replay = None
    if args.replay:
        if args.replay_pairs < 0:
            raise UserError(f"--replay-pairs must be >= 0, got {args.replay_pairs}")
        replay = sample_pairs(open_split(args.replay, d.train_split, d.fmt), args.replay_pairs, cfg.seed)
    elif args.replay_pairs:
        raise UserError("--replay-pairs needs --replay PREVIOUS_DATA")
    val_set, where = None, ""
    if d.val_split:
        if args.val_data:
            val_set, where = open_split(args.val_data, d.val_split, d.fmt, d.val_limit), f"{args.val_data} {d.val_split}"
        elif has_split(args.data, d.val_split) or not (retrain or args.replay):
            # A first training run keeps today's contract: the data's val split or a clear error.
            val_set, where = open_split(args.data, d.val_split, d.fmt, d.val_limit), f"{args.data} {d.val_split}"
        elif replay is not None and has_split(args.replay, d.val_split):
            val_set, where = open_split(args.replay, d.val_split, d.fmt, d.val_limit), f"{args.replay} {d.val_split}"
        elif replay is not None:
            replay, val_set = carve(replay, args.val_fraction, cfg.seed)
            where = f"{len(val_set)} pairs held out of {args.replay}"
        else:
            train_set, val_set = carve(train_set, args.val_fraction, cfg.seed)
            where = f"{len(val_set)} pairs held out of {args.data}"
    elif args.val_data:
        raise UserError("--val-data needs a validation split; data.val_split is empty")
    if getattr(args, "class_map", None) and (init is None or cfg.model.task != "detect"):
        raise UserError("--class-map maps the dataset's classes onto an --init detection model's; "
                        "without --init the model takes the dataset's classes")
    if init is not None and cfg.model.task == "detect":
        train_set, replay, val_set = init_classes(args, cfg, init, train_set, replay, val_set)
    if retrain and replay is None:
        log.warning("fine-tuning on the %d pairs of %s alone; --replay PREVIOUS_DATA also trains on the set the "
                    "--init model learnt from, so it does not forget it", len(train_set), args.data)
    if replay is not None:
        log.info("training on %d pairs of %s + %d replayed of %s", len(train_set), args.data, len(replay), args.replay)
        train_set = ConcatPairs([train_set, replay], task=cfg.model.task)
    return train_set, val_set, where


def run(args) -> int:
    from msmine.config import load_config, save_config
    from msmine.metrics_format import flatten_metrics, summary_line
    from msmine.train.config import TrainConfig
    from msmine.train.fit import check_init_classes, fit, read_init
    from msmine.train.workspace import apply_thread_limit, fit_model_to_dataset, prepared_pairs

    apply_thread_limit()
    if int(os.environ.get("RANK", "0") or 0) != 0:
        logging.getLogger().setLevel(logging.WARNING)  # under torchrun rank 0 speaks for all
    out = Path(args.out)
    overrides = list(args.overrides)
    if args.task:
        overrides.append(f"model.task={args.task}")
    if args.device:
        overrides.append(f"device={args.device}")
    cfg = load_config(TrainConfig, args.config, overrides)
    if args.init and args.resume:
        raise UserError("--init and --resume exclude each other (--resume continues OUT/last.pt)")
    init = read_init(args.init, cfg) if args.init else None  # the architecture comes from the checkpoint
    train_set, val_set, where = training_sets(args, cfg, init)
    if init is not None:
        check_init_classes(init, cfg, train_set)
    fit_model_to_dataset(cfg, train_set)
    main_rank = int(os.environ.get("RANK", "0") or 0) == 0
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    pairs = prepared_pairs(train_set, cfg, train=True, progress=True)
    val_pairs = prepared_pairs(val_set, cfg, train=False) if val_set is not None else None
    if val_set is not None and main_rank:
        log.info("validating on %s (%d pairs)", where, len(val_set))
    result = fit(cfg, pairs, init=init, out=out, resume=args.resume, val_pairs=val_pairs, force=args.force,
                 progress=True)
    if not main_rank:
        return 0
    report = {
        "task": cfg.model.task,
        "steps": result.steps,
        "epochs": result.epochs,
        "final_loss": result.final_loss,
        "train_seconds": result.seconds,
        "device": result.device,
        "train_pairs": len(train_set),
        "val_split": cfg.data.val_split,
        "val_set": where,
        "val": result.val,
        "val_flat": flatten_metrics(result.val),
        "history": result.history,
        "best": {"metric": result.metric, "value": result.best_value if result.history else None},
        "init": {"checkpoint": args.init, "value": result.baseline} if args.init else None,
        "refused": result.refused,
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    if result.val:
        print(summary_line(result.val))
    if result.refused:
        raise UserError(result.refused)
    print(f"wrote {', '.join(str(p) for p in result.written + [out / 'metrics.json'])}")
    return 0
