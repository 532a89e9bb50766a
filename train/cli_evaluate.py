"""``msmine evaluate``: metrics of a checkpoint per branch (visible / thermal / fused) and day / night.

    msmine evaluate runs/det/best.pt --data ../shared/data/msrs --split test --out runs/det/test.json

Detection: mAP, AP50, AP75 (COCO, pycocotools) and LAMR (person); segmentation: mIoU. Then
tables with one column per class name: AP50 per class (detection) or IoU per class
(segmentation). Every number is a fraction shown with three decimals.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="checkpoint written by msmine train (best.pt / last.pt)")
    parser.add_argument("--data", required=True, help="dataset root")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--fmt", default="auto", help="dataset format (auto, msrs, kaist, voc, coco)")
    parser.add_argument("--class-map", default=None, metavar="DATASET=MODEL,...|FILE.yaml",
                        help="use a dataset whose classes differ from the model's: classes of the same name match, "
                             "others by this map (e.g. pedestrian=person); unmatched dataset classes are dropped")
    parser.add_argument("--out", help="write the metrics as JSON here")
    parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N pairs (0 = all)")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per forward pass")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto", help="where to run")


def format_table(metrics: dict, class_names=None) -> str:
    """The metrics table ``msmine evaluate`` prints (msmine.metrics_format: one format everywhere)."""
    from msmine.metrics_format import format_table as table

    return table(metrics, class_names)


def run(args) -> int:
    from msmine.errors import UserError
    from msmine.train.batching import PreparedPairs
    from msmine.train.checkpoint import load_checkpoint
    from msmine.train.evaluate import evaluate_model
    from msmine.train.trainer import resolve_device
    from msmine.train.workspace import open_split

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    model, meta = load_checkpoint(args.checkpoint)
    dataset = open_split(args.data, args.split, args.fmt, args.limit)
    if model.task == "detect" and (args.class_map or list(dataset.class_names) != list(model.class_names)):
        from msmine.train.data.class_map import map_classes, parse_class_map

        if not args.class_map and not {c.lower() for c in dataset.class_names} & {c.lower() for c in model.class_names}:
            raise UserError(f"checkpoint classes {model.class_names} differ from the dataset's "
                            f"{list(dataset.class_names)}; map them with --class-map DATASET_CLASS=MODEL_CLASS")
        dataset = map_classes(dataset, list(model.class_names), parse_class_map(args.class_map))
    expected = dataset.class_names if model.task == "detect" else dataset.segmentation_classes
    if expected is not None and list(expected) != list(model.class_names):
        raise UserError(f"checkpoint classes {model.class_names} differ from the dataset's {list(expected)}")
    device = resolve_device(args.device)
    pairs = PreparedPairs(dataset, model.input_size, train=False, cache=False)
    metrics = evaluate_model(model, pairs, device, batch_size=args.batch_size, progress=True, per_class=True)
    print(format_table(metrics, model.class_names))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "split": args.split, "task": model.task,
                                   "step": meta.get("step"), "metrics": metrics}, indent=2))
        print(f"wrote {out}")
    return 0
