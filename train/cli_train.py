"""``msmine train``: train the dual-stream three-branch model on a paired dataset.

    msmine train --data ../shared/data/msrs --task detect --out runs/det --set epochs=10

Writes ``OUT/config.yaml`` (resolved), ``OUT/last.pt`` (every epoch), ``OUT/best.pt`` (best fused
validation metric), ``OUT/metrics.json``. ``--resume`` continues from ``OUT/last.pt``.
``--init CKPT`` fine-tunes: it starts from another run's weights (and model settings), with a fresh
optimiser and step count, e.g. to retrain the fleet's model on newly labelled pairs.
"""

from __future__ import annotations

import json
import logging
import time
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
    add_config_arguments(parser)


def main_metric(task: str) -> str:
    return "fused_AP50" if task == "detect" else "fused_mIoU"


def run(args) -> int:
    from msmine.config import load_config, save_config
    from msmine.train.checkpoint import model_config_from_dict, read_checkpoint, save_checkpoint
    from msmine.train.config import TrainConfig
    from msmine.train.evaluate import evaluate_model, flatten_metrics
    from msmine.train.models import build_model
    from msmine.train.trainer import Trainer, resolve_device, seed_everything
    from msmine.train.workspace import apply_thread_limit, fit_model_to_dataset, open_split, prepared_pairs

    apply_thread_limit()
    out = Path(args.out)
    overrides = list(args.overrides)
    if args.task:
        overrides.append(f"model.task={args.task}")
    if args.device:
        overrides.append(f"device={args.device}")
    cfg = load_config(TrainConfig, args.config, overrides)
    if args.init and args.resume:
        raise UserError("--init and --resume exclude each other (--resume continues OUT/last.pt)")
    init_state = read_checkpoint(args.init, map_location="cpu") if args.init else None
    if init_state is not None:
        # The architecture comes from the checkpoint; the training settings from the config.
        cfg.model = model_config_from_dict(init_state["model_config"])
        cfg.model.pretrained = ""
    device = resolve_device(cfg.device)
    train_set = open_split(args.data, cfg.data.train_split, cfg.data.fmt, cfg.data.limit)
    if init_state is not None:
        names = train_set.segmentation_classes if cfg.model.task == "segment" else train_set.class_names
        if list(names or []) != list(cfg.model.class_names):
            raise UserError(f"--init {args.init}: its classes {list(cfg.model.class_names)} differ from the "
                            f"dataset's {list(names or [])}")
    fit_model_to_dataset(cfg, train_set)
    val_set = None
    if cfg.data.val_split:
        val_set = open_split(args.data, cfg.data.val_split, cfg.data.fmt, cfg.data.val_limit)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")

    seed_everything(cfg.seed)
    model = build_model(cfg.model)
    if init_state is not None:
        try:
            model.load_state_dict(init_state["model"])
        except RuntimeError as exc:
            raise UserError(f"--init {args.init} does not match its model config: {str(exc)[:300]}") from None
        log.info("fine-tuning from %s (step %s)", args.init, init_state.get("step"))
    pairs = prepared_pairs(train_set, cfg, train=True, progress=True)
    trainer = Trainer(model, cfg, pairs, device)
    steps_per_epoch = max(1, len(pairs) // min(cfg.batch_size, len(pairs)))
    total = cfg.max_steps if cfg.max_steps > 0 else cfg.epochs * steps_per_epoch
    best = {"value": float("-inf")}
    last_path = out / "last.pt"
    if args.resume:
        if not last_path.is_file():
            raise UserError(f"--resume: no checkpoint to resume from at {last_path}")
        state = read_checkpoint(last_path, map_location="cpu")
        model.load_state_dict(state["model"])
        model.to(device)
        if state.get("optimizer"):
            trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.step, trainer.epoch = int(state["step"]), int(state["epoch"])
        best["value"] = float(state.get("best_value", float("-inf")))
        log.info("resumed from %s at step %d (epoch %d)", last_path, trainer.step, trainer.epoch)
    val_pairs = prepared_pairs(val_set, cfg, train=False) if val_set is not None else None
    metric_name = main_metric(cfg.model.task)
    history: list[dict] = []

    def validate() -> dict:
        metrics = evaluate_model(model, val_pairs, device, batch_size=max(8, cfg.batch_size), cfg=cfg,
                                 progress=True, workers=cfg.data.workers)
        flat = flatten_metrics(metrics)
        history.append({"epoch": trainer.epoch, "step": trainer.step, **flat})
        value = flat.get(metric_name, float("nan"))
        if value == value and value > best["value"]:
            best["value"] = value
            save_checkpoint(out / "best.pt", model, None, trainer.epoch, trainer.step, cfg,
                            extra={"best_value": value, "best_metric": metric_name})
        return metrics

    class EpochHook:
        def after_epoch(self, tr):
            if cfg.checkpoint_every and tr.epoch % cfg.checkpoint_every == 0:
                save_checkpoint(last_path, model, tr.optimizer, tr.epoch, tr.step, cfg,
                                extra={"best_value": best["value"]})
            if val_pairs is not None and cfg.eval_every and tr.epoch % cfg.eval_every == 0:
                validate()

    trainer.hooks.append(EpochHook())
    remaining = total - trainer.step
    started = time.perf_counter()
    final_loss = float("nan")
    if remaining > 0:
        log.info("training %d steps (%d per epoch) on %s, %d pairs", remaining, steps_per_epoch, device, len(pairs))
        final_loss = trainer.train(remaining, progress=True, schedule_total=total, schedule_offset=trainer.step)
    seconds = time.perf_counter() - started
    save_checkpoint(last_path, model, trainer.optimizer, trainer.epoch, trainer.step, cfg,
                    extra={"best_value": best["value"]})
    metrics = validate() if val_pairs is not None else {}
    if val_pairs is None:
        save_checkpoint(out / "best.pt", model, None, trainer.epoch, trainer.step, cfg)
    report = {
        "task": cfg.model.task,
        "steps": trainer.step,
        "epochs": trainer.epoch,
        "final_loss": final_loss,
        "train_seconds": round(seconds, 2),
        "device": str(device),
        "val_split": cfg.data.val_split,
        "val": metrics,
        "val_flat": flatten_metrics(metrics) if metrics else {},
        "history": history,
        "best": {"metric": metric_name, "value": best["value"] if history else None},
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    if metrics:
        flat = report["val_flat"]
        keys = [k for k in flat if k.count("_") == 1]
        print(" ".join(f"{k}={flat[k]:.4f}" for k in sorted(keys)))
    print(f"wrote {out / 'last.pt'}, {out / 'best.pt'}, {out / 'metrics.json'}")
    return 0
