"""MSRS box statistics against a model's anchors: how many ground-truth boxes any anchor can match.

``python -m msmine.train.models.anchor_stats DATA [--config configs/detect_lite0.yaml ...]``
prints, per label set (fusion, visible, infrared) of the split, the box height (fraction of the
letterboxed input height) and pixel aspect (w/h) quantiles per class, and for each config the share
of boxes whose best anchor reaches IoU 0.5 (the matching threshold; below it a box is only kept by
its single best anchor). The figures in docs/training.md came from this script.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from msmine.letterbox import letterbox_geometry
from msmine.train.anchors import box_iou, cxcywh_to_xyxy

MODALITIES = ("fusion", "visible", "infrared")
SOURCE_HW = (480, 640)  # MSRS frames


def read_boxes(root: Path, split: str, modality: str, input_size: tuple[int, int]) -> np.ndarray:
    """YOLO labels -> [M, 5] (x1, y1, x2, y2 normalised to the letterboxed input, class)."""
    scale, (px, py), _ = letterbox_geometry(*SOURCE_HW, input_size)
    h, w = input_size
    rows = []
    for f in sorted((root / split / "labels" / modality).glob("*.txt")):
        for line in f.read_text().splitlines():
            parts = line.split()
            if len(parts) != 5:
                continue
            c, cx, cy, bw, bh = map(float, parts)
            cx, bw = (cx * SOURCE_HW[1] * scale + px) / w, bw * SOURCE_HW[1] * scale / w
            cy, bh = (cy * SOURCE_HW[0] * scale + py) / h, bh * SOURCE_HW[0] * scale / h
            rows.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, c])
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)


def best_anchor_iou(anchors: torch.Tensor, boxes: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Per box, the highest IoU over all anchors ([A, 4] cx, cy, w, h)."""
    corners = cxcywh_to_xyxy(anchors)
    out = [box_iou(torch.from_numpy(boxes[i:i + chunk, :4]), corners).max(dim=1).values
           for i in range(0, len(boxes), chunk)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def main(argv=None) -> int:
    from msmine.config import load_config
    from msmine.train.config import TrainConfig
    from msmine.train.models import build_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="MSRS root")
    ap.add_argument("--split", default="train")
    ap.add_argument("--config", action="append", default=[], help="training config(s) to check (repeatable)")
    args = ap.parse_args(argv)
    configs = args.config or ["configs/detect_small.yaml"]
    models = []
    for path in configs:
        cfg = load_config(TrainConfig, path, [])
        cfg.model.pretrained = ""
        models.append((path, build_model(cfg.model)))
    size = models[0][1].input_size
    # classes.txt: "<id> <name>" a line (or just the name)
    names = [line.split()[-1] for line in (args.data / "classes.txt").read_text().splitlines() if line.strip()]
    for modality in MODALITIES:
        boxes = read_boxes(args.data, args.split, modality, size)
        height = boxes[:, 3] - boxes[:, 1]
        aspect = (boxes[:, 2] - boxes[:, 0]) * size[1] / np.maximum(height * size[0], 1e-9)
        print(f"{args.split}/{modality}: {len(boxes)} boxes at input {size[0]}x{size[1]}")
        for k, name in enumerate(names):
            m = boxes[:, 4] == k
            if m.any():
                q = np.quantile(height[m], [0.05, 0.5, 0.95])
                a = np.quantile(aspect[m], [0.05, 0.5, 0.95])
                print(f"  {name:8s} n={int(m.sum()):5d} height/H q05 {q[0]:.3f} median {q[1]:.3f} q95 {q[2]:.3f}"
                      f" | aspect w/h q05 {a[0]:.2f} median {a[1]:.2f} q95 {a[2]:.2f}")
        for path, model in models:
            iou = best_anchor_iou(model.anchors, boxes)
            person = boxes[:, 4] == 0
            small = height < 0.06
            print(f"  {path}: {model.anchors.shape[0]} anchors; best IoU >= 0.5 for {np.mean(iou >= 0.5):.1%} "
                  f"of boxes, {np.mean(iou[person] >= 0.5):.1%} of persons, {np.mean(iou[small] >= 0.5):.1%} "
                  f"of boxes under 6% of H; median best IoU {np.median(iou):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
